"""`kstudio-dev <subcommand>`: the development tools, kept out of the product's `kstudio` command.

kstudio-dev cluster up|down|status     the local control plane, MinIO and the node agent
kstudio-dev node-agent --config FILE   the kubelet stand-in (started by `cluster up`)
kstudio-dev image-venv                 build the product wheel into a clean venv, as the Dockerfile does
kstudio-dev upload-examples            the example datasets into object storage (demo, tests, bench)
kstudio-dev vocabulary [--check]       regenerate core's algorithms.json from scikit-learn
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "cluster": ("kstudio_localcluster.cli:main", "start/stop/inspect the local cluster"),
    "node-agent": ("kstudio_localcluster.nodeagent.cli:main", "run the local node agent (root)"),
    "image-venv": ("kstudio_localcluster.imagevenv:main", "the product wheel in a clean venv (the image)"),
    "upload-examples": ("kstudio_devtools.examples:main", "upload the example datasets to object storage"),
    "vocabulary": ("kstudio_devtools.vocabulary_gen:main", "core's algorithms.json from scikit-learn"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: kstudio-dev <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {n.ljust(width)}  {h}" for n, (_, h) in sorted(SUBCOMMANDS.items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"kstudio-dev: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = SUBCOMMANDS[name][0].split(":")
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return func(rest)


if __name__ == "__main__":
    sys.exit(main())
