"""Pure parts of the local cluster harness: PKI, command lines, config contract, pidfiles, forward args."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kstudio_localcluster import components, forward, processes, sessions
from kstudio_localcluster.certs import ensure_pki
from kstudio_localcluster.cluster import MinioInfo, _busy_with_another_setup, _write_configs
from kstudio_localcluster.layout import ClusterLayout


def _x509_text(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-text"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ensure_pki(d)
    return d


def test_apiserver_cert_covers_every_address_clients_use(pki_dir: Path) -> None:
    text = _x509_text(pki_dir / "apiserver.crt")
    for san in ("IP Address:127.0.0.1", "IP Address:10.244.0.1", "IP Address:10.96.0.1",
                "DNS:kubernetes.default.svc", "DNS:localhost"):  # fmt: skip
        assert san in text
    assert "TLS Web Server Authentication" in text


@pytest.mark.parametrize(
    ("stem", "subject"),
    [
        ("node", "CN = system:node:kst-node, O = system:nodes"),
        ("kube-controller-manager", "CN = system:kube-controller-manager"),
        ("kube-scheduler", "CN = system:kube-scheduler"),
        ("kube-proxy", "CN = system:kube-proxy"),
        ("admin", "CN = kstudio-admin, O = system:masters"),
    ],
)
def test_client_certs_carry_the_identities_rbac_and_the_node_authorizer_expect(
    pki_dir: Path, stem: str, subject: str
) -> None:
    text = _x509_text(pki_dir / f"{stem}.crt")
    assert f"Subject: {subject}" in text
    assert "TLS Web Client Authentication" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki_dir / "ca.crt"), str(pki_dir / f"{stem}.crt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr


def test_kubelet_serving_cert_is_for_the_node_ip(pki_dir: Path) -> None:
    text = _x509_text(pki_dir / "kubelet.crt")
    assert "IP Address:10.244.0.1" in text and "TLS Web Server Authentication" in text


def test_ensure_pki_keeps_existing_files_and_remakes_leaves_for_a_new_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ensure_pki(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert oct(pki.key("admin").stat().st_mode & 0o777) == "0o600"
    pki.ca_crt.unlink()
    ensure_pki(tmp_path)
    assert pki.crt("node").read_bytes() != before["node.crt"]
    assert pki.sa_key.read_bytes() == before["sa.key"]  # tokens stay valid across a CA change


def test_component_flags_enable_node_authorization_and_kubectl_logs(tmp_path: Path) -> None:
    layout = ClusterLayout(root=tmp_path)
    pki = ensure_pki(layout.pki)
    api = components.component_argv("kube-apiserver", Path("/bin"), layout, pki, tmp_path)
    assert "--authorization-mode=Node,RBAC" in api
    assert "--enable-admission-plugins=NodeRestriction" in api
    assert f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}" in api
    assert f"--kubelet-certificate-authority={pki.ca_crt}" in api
    assert "--advertise-address=10.244.0.1" in api
    proxy = components.component_argv("kube-proxy", Path("/bin"), layout, pki, tmp_path)
    assert "--proxy-mode=nftables" in proxy and "--hostname-override=kst-node" in proxy


def test_node_agent_config_we_write_is_what_the_agent_reads(tmp_path: Path) -> None:
    from kstudio_localcluster.nodeagent.config import load_config

    layout = ClusterLayout(name="kstudio-unit", root=tmp_path)
    pki = ensure_pki(layout.pki)
    _write_configs(layout, pki, tmp_path, MinioInfo("127.0.0.1:1", "10.244.0.1:9000", "ak", "sk"))
    cfg = load_config(layout.node_agent_json)
    assert (cfg.node_name, cfg.node_ip, cfg.pod_cidr, cfg.bridge) == (
        "kst-node",
        "10.244.0.1",
        "10.244.0.0/24",
        "kst0",
    )
    assert cfg.netns == "kstudio-unit"
    assert cfg.cgroup_parent == "kstudio-unit-pods" and cfg.pod_netns_prefix == "kstudio-unit-pod-"
    assert cfg.serving_cert == pki.crt("kubelet") and cfg.client_ca_file == pki.ca_crt
    assert cfg.kubeconfig.exists()
    minio = json.loads(layout.minio_json.read_text())
    assert minio == {"hostEndpoint": "127.0.0.1:1", "podEndpoint": "10.244.0.1:9000", "accessKey": "ak",
                     "secretKey": "sk"}  # fmt: skip
    assert oct(layout.minio_json.stat().st_mode & 0o777) == "0o600"


def test_default_instance_keeps_the_agents_default_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KSTUDIO_CLUSTER_INSTANCE", raising=False)
    layout = ClusterLayout()
    assert (layout.netns, layout.cgroup_parent, layout.pod_netns_prefix) == (
        "kstudio",
        "kstudio-pods",
        "kst-",
    )


def test_pidfile_record_does_not_match_a_recycled_pid(tmp_path: Path) -> None:
    rec = processes.start("sleeper", ["sleep", "30"], run_dir=tmp_path, log_dir=tmp_path, netns=None)
    assert processes.record_alive(rec)
    assert processes.read_record(tmp_path, "sleeper") == rec
    impostor = processes.ProcessRecord("sleeper", rec.pid, rec.start_ticks + 1, rec.argv)
    assert not processes.record_alive(impostor)
    processes.stop(impostor, grace=0.1)  # must not touch the real process
    assert processes.is_alive(rec.pid)
    processes.stop(rec, grace=5.0)
    assert not processes.is_alive(rec.pid)


def test_forward_rejects_malformed_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        forward.main(["--netns", "x", "127.0.0.1:1"])
    assert exc.value.code == 2
    assert "expected LISTEN=TARGET" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        forward.main(["--netns", "x", "127.0.0.1=10.0.0.1:80"])
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_cluster_up_as_non_root_fails_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from kstudio_localcluster import cli

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["--root", str(tmp_path / "c"), "--name", "kstudio-unit", "up"]) == 1
    assert "the local cluster needs root" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_cluster_of_another_checkout_is_not_replaced_while_its_sessions_run(tmp_path: Path) -> None:
    """Two checkouts on one machine (a helper's worktree and main): the second waits instead of tearing
    down the cluster whose pods run the first one's code mid-test."""
    layout = ClusterLayout(root=tmp_path)
    layout.root.mkdir(parents=True, exist_ok=True)
    sessions.write_json(layout.state_json, {"repo": "/elsewhere/checkout", "binDir": str(tmp_path)})
    assert _busy_with_another_setup(layout, tmp_path, tmp_path, want_agent=True) == ""  # nobody uses it
    layout.users.mkdir(parents=True)
    (layout.users / f"1-{processes._start_ticks(1)}").touch()  # a live session (pid 1 is always alive)
    busy = _busy_with_another_setup(layout, tmp_path, tmp_path, want_agent=True)
    assert "another checkout (/elsewhere/checkout)" in busy and "1 session(s)" in busy


def test_an_instance_number_gives_a_checkout_its_own_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KSTUDIO_CACHE", str(tmp_path))
    monkeypatch.setenv("KSTUDIO_CLUSTER_INSTANCE", "3")
    layout = ClusterLayout()
    assert (layout.netns, layout.root, layout.api_host_port, layout.minio_host_port) == (
        "kst3",
        tmp_path / "cluster-3",
        6446,
        9103,
    )
    assert (layout.cgroup_parent, layout.pod_netns_prefix) == ("kst3-pods", "kst3-pod-")
    monkeypatch.setenv("KSTUDIO_CLUSTER_INSTANCE", "main")
    with pytest.raises(ValueError, match="expected a number from 1 to 99"):
        ClusterLayout()
