"""The cluster's PKI, made with the openssl CLI (installed on every machine we run on, .ci/run ensures it).

One CA signs every certificate: the API server's serving cert, a client cert per component (the
built-in RBAC bindings and the Node authorizer key off their CN/O), the node agent's kubelet serving
cert and the API server's kubelet client cert (for `kubectl logs`). Keys are EC P-256 (fast to make);
the service-account signing key is RSA 2048. Files are made once and reused; `ensure_pki` only fills
in what is missing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kstudio_localcluster.layout import KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME

DAYS = "3650"

API_SERVER_SANS = (
    "IP:127.0.0.1",
    f"IP:{NODE_IP}",
    f"IP:{KUBERNETES_SERVICE_IP}",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: file stem, subject and usage."""

    stem: str
    common_name: str
    organization: str | None = None
    server: bool = False
    client: bool = False
    sans: tuple[str, ...] = ()


LEAVES: tuple[CertSpec, ...] = (
    CertSpec("apiserver", "kube-apiserver", server=True, sans=API_SERVER_SANS),
    CertSpec("admin", "kstudio-admin", "system:masters", client=True),
    CertSpec("kube-controller-manager", "system:kube-controller-manager", client=True),
    CertSpec("kube-scheduler", "system:kube-scheduler", client=True),
    CertSpec("kube-proxy", "system:kube-proxy", client=True),
    CertSpec("node", f"system:node:{NODE_NAME}", "system:nodes", client=True),
    # kwok updates fake Nodes, their Leases and every pod bound to them: cluster-wide rights.
    CertSpec("kwok", "kstudio-kwok", "system:masters", client=True),
    CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client=True),
    CertSpec("kubelet", NODE_NAME, server=True, sans=(f"IP:{NODE_IP}", f"DNS:{NODE_NAME}", "DNS:localhost")),
)


class PkiError(RuntimeError):
    """openssl failed; the message carries its stderr."""


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, stem: str) -> Path:
        return self.dir / f"{stem}.crt"

    def key(self, stem: str) -> Path:
        return self.dir / f"{stem}.key"


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _make_ca(pki: Pki) -> None:
    _ec_key(pki.ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(pki.ca_key), "-subj", "/CN=kstudio-local-ca", "-days", DAYS,
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-out", str(pki.ca_crt),
    )  # fmt: skip


def _make_leaf(pki: Pki, spec: CertSpec) -> None:
    key, crt = pki.key(spec.stem), pki.crt(spec.stem)
    csr = pki.dir / f"{spec.stem}.csr"
    ext = pki.dir / f"{spec.stem}.ext"
    subject = f"/CN={spec.common_name}" + (f"/O={spec.organization}" if spec.organization else "")
    usages = [u for u, on in (("serverAuth", spec.server), ("clientAuth", spec.client)) if on]
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    if spec.sans:
        lines.append(f"subjectAltName={','.join(spec.sans)}")
    ext.write_text("\n".join(lines) + "\n")
    _ec_key(key)
    try:
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_crt), "-CAkey", str(pki.ca_key),
            "-set_serial", "0x" + secrets.token_hex(16), "-days", DAYS, "-extfile", str(ext),
            "-out", str(crt),
        )  # fmt: skip
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)


def ensure_pki(directory: Path) -> Pki:
    """Create the CA, every leaf cert and the SA key pair under `directory` unless already there.

    A new CA invalidates every leaf, so when the CA is (re)made all leaves are remade too.
    Raises PkiError if openssl fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    pki = Pki(directory)
    fresh_ca = not (pki.ca_crt.exists() and pki.ca_key.exists())
    if fresh_ca:
        _make_ca(pki)
    for spec in LEAVES:
        if fresh_ca or not (pki.crt(spec.stem).exists() and pki.key(spec.stem).exists()):
            _make_leaf(pki, spec)
    if not (pki.sa_key.exists() and pki.sa_pub.exists()):
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(pki.sa_key))
        pki.sa_key.chmod(0o600)
        _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    return pki
