"""Kubernetes resource quantities ("500m", "64Mi", "1e3") as exact fractions."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SUFFIX = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_RE = re.compile(r"^([+-]?[0-9.]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)$")


def parse_quantity(value: str | int | float) -> Fraction:
    """Parse a quantity; raises ValueError naming the bad value."""
    if isinstance(value, int | float):
        return Fraction(value)
    m = _RE.match(value.strip())
    if not m or m.group(3) not in _SUFFIX:
        raise ValueError(f"invalid resource quantity {value!r}")
    number = Fraction(m.group(1))
    if m.group(2):
        number *= Fraction(10) ** int(m.group(2))
    return number * _SUFFIX[m.group(3)]


def ceil_div(value: Fraction, divisor: Fraction) -> int:
    """How kubelet renders a resourceFieldRef: value / divisor rounded up (never below 1 for non-zero)."""
    return math.ceil(value / divisor)
