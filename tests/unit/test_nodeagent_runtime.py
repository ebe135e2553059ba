"""Pure parts of the runtime: images, users, quantities, config, root filesystem plan, volumes, logs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from kstudio_localcluster.nodeagent.config import ConfigError, load_config
from kstudio_localcluster.nodeagent.containers import ConfigError as ContainerConfigError
from kstudio_localcluster.nodeagent.containers import dropped_caps, effective_user
from kstudio_localcluster.nodeagent.images import (
    ImagePullError,
    container_argv,
    repository_name,
    resolve_image,
)
from kstudio_localcluster.nodeagent.logserver import log_chunks, render
from kstudio_localcluster.nodeagent.quantity import parse_quantity
from kstudio_localcluster.nodeagent.runtime import Mount, rootfs_ops
from kstudio_localcluster.nodeagent.volumes import TokenState, VolumeError, object_payload, write_atomic


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("kstudio:dev", "kstudio"),
        ("ghcr.io/org/kstudio:0.1.0", "kstudio"),
        ("localhost:5000/kstudio@sha256:abc", "kstudio"),
        ("nginx", "nginx"),
        ("ghcr.io/org/kstudio-extra:1", "kstudio-extra"),
    ],
)
def test_repository_name_ignores_registry_tag_and_digest(ref: str, repo: str) -> None:
    assert repository_name(ref) == repo


def test_only_the_project_image_resolves_everything_else_is_a_pull_error(tmp_path: Path) -> None:
    image = resolve_image("ghcr.io/org/kstudio:0.1.0", tmp_path / "venv")
    assert image.entrypoint == ["kstudio"] and (image.uid, image.gid) == (65532, 65532)
    assert image.env["PATH"].startswith(f"{tmp_path}/venv/bin:")
    assert image.image_id == f"local://{tmp_path}/venv"
    with pytest.raises(ImagePullError, match=re.escape('failed to pull and unpack image "nginx:1.27"')):
        resolve_image("nginx:1.27", tmp_path / "venv")


def test_command_replaces_entrypoint_and_args_replace_cmd(tmp_path: Path) -> None:
    image = resolve_image("kstudio:dev", tmp_path)
    assert container_argv({"args": ["serve", "--port", "8080"]}, image) == [
        "kstudio",
        "serve",
        "--port",
        "8080",
    ]
    assert container_argv({"command": ["python", "-m", "x"], "args": ["a"]}, image) == [
        "python",
        "-m",
        "x",
        "a",
    ]
    assert container_argv({}, image) == ["kstudio"]


def pod(sc: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {"securityContext": sc or {}}}


def test_user_comes_from_container_then_pod_then_image() -> None:
    assert effective_user(pod(), {"name": "c"}, 65532, 65532) == (65532, 65532, [])
    assert effective_user(pod({"runAsUser": 1000, "fsGroup": 2000}), {"name": "c"}, 65532, 65532) == (
        1000,
        0,
        [2000],
    )
    got = effective_user(
        pod({"runAsUser": 1000}), {"name": "c", "securityContext": {"runAsUser": 7, "runAsGroup": 8}}, 0, 0
    )
    assert got == (7, 8, [])


def test_run_as_non_root_with_uid_0_is_a_config_error() -> None:
    with pytest.raises(ContainerConfigError, match="container has runAsNonRoot and image will run as root"):
        effective_user(pod({"runAsNonRoot": True, "runAsUser": 0}), {"name": "c"}, 65532, 65532)


def test_drop_all_drops_every_capability() -> None:
    assert len(dropped_caps({"securityContext": {"capabilities": {"drop": ["ALL"]}}})) == 41
    assert dropped_caps({"securityContext": {"capabilities": {"drop": ["NET_RAW", "CAP_CHOWN"]}}}) == [13, 0]


def test_quantities() -> None:
    assert parse_quantity("64Mi") == 64 * 2**20
    assert parse_quantity("500m") * 1000 == 500
    assert parse_quantity("1e3") == 1000 and parse_quantity("2G") == 2 * 10**9
    with pytest.raises(ValueError, match="invalid resource quantity '12XB'"):
        parse_quantity("12XB")


def test_config_names_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"kubeconfig": "/k", "nodeName": "n"}))
    with pytest.raises(ConfigError, match="nodeIP, podCIDR, bridge, stateDir, repo"):
        load_config(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)


def test_rootfs_plan_hides_the_host_and_exposes_only_what_pods_need() -> None:
    ops = rootfs_ops(
        ["/root/.pyenv/versions/3.11.7", "/work/main"], [Mount("/state/v/sec", "/etc/sec", True)]
    )
    by_dst = {op["dst"]: op for op in ops}
    assert by_dst["/"]["op"] == "tmpfs"
    assert by_dst["/usr"] == {"op": "bind", "src": "/usr", "dst": "/usr", "ro": True}
    assert (
        by_dst["/etc"]["op"] == "overlay"
    )  # a volume lands inside it: private copy-on-write, host untouched
    assert by_dst["/root"] == {"op": "mkdir", "dst": "/root", "mode": "0755"}
    assert by_dst["/root/.pyenv/versions/3.11.7"]["ro"] and by_dst["/work/main"]["ro"]
    assert by_dst["/tmp"]["op"] == "tmpfs" and by_dst["/dev"]["op"] == "tmpfs"
    assert by_dst["/etc/sec"] == {"op": "bind", "src": "/state/v/sec", "dst": "/etc/sec", "ro": True}
    assert not any(op.get("src", "").startswith(("/root/.cache", "/home")) for op in ops)
    assert ops.index(by_dst["/etc"]) < ops.index(by_dst["/etc/sec"])


def test_secret_items_modes_and_missing_keys() -> None:
    data = {"a": b"1", "b": b"2"}
    got = object_payload(
        "secret",
        {"secretName": "s", "items": [{"key": "a", "path": "x/a.txt", "mode": 0o400}]},
        lambda k, n: data,
        0o644,
    )
    assert got == {"x/a.txt": (b"1", 0o400)}
    with pytest.raises(VolumeError, match="has no key 'zzz'"):
        object_payload(
            "secret", {"secretName": "s", "items": [{"key": "zzz", "path": "z"}]}, lambda k, n: data, 0o644
        )
    with pytest.raises(VolumeError, match='secret "s" not found'):
        object_payload("secret", {"secretName": "s"}, lambda k, n: None, 0o644)
    assert object_payload("secret", {"secretName": "s", "optional": True}, lambda k, n: None, 0o644) == {}


def test_atomic_writer_publishes_through_data_symlink_and_removes_stale_keys(tmp_path: Path) -> None:
    assert write_atomic(tmp_path, {"mode": (b"fast", 0o644), "level": (b"3", 0o644)})
    assert (tmp_path / "mode").read_text() == "fast" and os.readlink(tmp_path / "mode") == "..data/mode"
    first = os.readlink(tmp_path / "..data")
    assert not write_atomic(tmp_path, {"mode": (b"fast", 0o644), "level": (b"3", 0o644)})
    assert write_atomic(tmp_path, {"mode": (b"slow", 0o644)})
    assert (tmp_path / "mode").read_text() == "slow" and not (tmp_path / "level").exists()
    assert os.readlink(tmp_path / "..data") != first and not (tmp_path / first).exists()
    with pytest.raises(VolumeError, match="must be relative"):
        write_atomic(tmp_path, {"../escape": (b"x", 0o644)})


def test_tokens_refresh_after_80_percent_of_their_lifetime() -> None:
    state = TokenState("t", issued_at=1000.0, expires_at=4600.0)
    assert not state.needs_refresh(1000.0 + 2879)
    assert state.needs_refresh(1000.0 + 2881)
    assert TokenState().needs_refresh(0.0)


def test_cri_log_lines_render_with_and_without_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(
        b"2026-01-01T00:00:00.000000001Z stdout F one\n"
        b"2026-01-01T00:00:01.000000001Z stderr P par\n"
        b"2026-01-01T00:00:01.000000002Z stderr F tial\n"
        b"2026-01-01T00:00:02.000000001Z stdout F three\n"
    )
    assert b"".join(log_chunks(log, None, False, False, None, lambda: False)) == b"one\npartial\nthree\n"
    assert (
        b"".join(log_chunks(log, 1, False, True, None, lambda: False))
        == b"2026-01-01T00:00:02.000000001Z three\n"
    )
    assert render(b"2026-01-01T00:00:00Z stdout F \n", False) == b"\n"


def test_pods_get_a_fast_failing_resolver_unless_they_bring_dns_config() -> None:
    from kstudio_localcluster.nodeagent.podworker import hosts_file, resolv_conf

    assert resolv_conf({}) == "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
    custom = {
        "dnsConfig": {
            "nameservers": ["10.0.0.10"],
            "searches": ["svc.local"],
            "options": [{"name": "ndots", "value": "2"}],
        }
    }
    assert resolv_conf(custom) == "nameserver 10.0.0.10\nsearch svc.local\noptions ndots:2\n"
    assert "10.244.0.12\tweb-0\n" in hosts_file("10.244.0.12", "web-0")


def test_read_only_root_makes_everything_but_volumes_and_dev_read_only_after_creating_mount_points() -> None:
    ops = rootfs_ops(["/work/main"], [Mount("/state/v/tmp", "/tmp", False)], read_only_root=True)
    kinds = [(op["op"], op["dst"]) for op in ops]
    assert (
        kinds.index(("mountpoint", "/tmp")) < kinds.index(("readonly", "/")) < kinds.index(("bind", "/tmp"))
    )
    assert {("readonly", d) for d in ("/", "/tmp", "/var/tmp", "/run")} <= set(kinds)
    assert ("readonly", "/dev") not in kinds
    assert not any(op == "readonly" for op, _ in [(o["op"], o["dst"]) for o in rootfs_ops(["/w"], [])])


def test_cpu_limits_become_cfs_quota_and_requests_become_shares() -> None:
    from kstudio_localcluster.nodeagent.containers import cpu_settings

    got = cpu_settings({"resources": {"limits": {"cpu": "250m"}, "requests": {"cpu": "100m"}}})
    assert (got.quota_us, got.shares) == (25_000, 102)
    only_limit = cpu_settings({"resources": {"limits": {"cpu": "2"}}})
    assert (only_limit.quota_us, only_limit.shares) == (200_000, 2048)  # the request defaults to the limit
    assert cpu_settings({}) == cpu_settings({"resources": {}})
    assert cpu_settings({}).quota_us is None and cpu_settings({}).shares is None


def test_node_capacity_advertises_at_least_eight_cpus_unless_configured(tmp_path: Path) -> None:
    from kstudio_localcluster.nodeagent.config import parse_config
    from kstudio_localcluster.nodeagent.node import node_capacity

    base = {"kubeconfig": "k", "nodeName": "n", "nodeIP": "10.244.0.1", "podCIDR": "10.244.0.0/24"}
    base |= {"bridge": "kst0", "stateDir": str(tmp_path), "repo": str(tmp_path)}
    cap = node_capacity(parse_config(base))
    assert int(cap["cpu"]) >= 8 and cap["memory"].endswith("Ki") and cap["pods"] == "110"
    assert node_capacity(parse_config({**base, "cpu": "3", "memory": "4Gi"}))["cpu"] == "3"


def test_bytecode_targets_are_site_packages_and_editable_source_dirs_inside_the_checkout(
    tmp_path: Path,
) -> None:
    from kstudio_localcluster.nodeagent.images import bytecode_targets

    site = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (tmp_path / "cli").mkdir()
    (site / "_editable.pth").write_text(f"{tmp_path / 'cli'}\n/usr/lib/elsewhere\nimport os\n")
    assert bytecode_targets(tmp_path / ".venv", tmp_path) == [site, tmp_path / "cli"]


def test_image_content_under_a_volume_target_stays_visible_above_the_volume() -> None:
    # A checkout cloned under /tmp (as CI may do) is the "image"; a pod mounting an emptyDir at /tmp must
    # not hide it, or `kstudio` is not found in $PATH.
    for read_only_root in (False, True):
        ops = rootfs_ops(
            ["/tmp/ci/checkout", "/srv/py"],
            [Mount("/state/v/tmp", "/tmp", False)],
            read_only_root=read_only_root,
        )
        kinds = [(op["op"], op["dst"]) for op in ops]
        assert kinds.index(("bind", "/tmp")) < kinds.index(("bind", "/tmp/ci/checkout"))
        rebind = ops[kinds.index(("bind", "/tmp/ci/checkout"))]
        assert rebind["ro"] is True and rebind["src"] == "/tmp/ci/checkout"
        # not shadowed: content outside volume targets keeps its place before the volumes
        assert kinds.index(("bind", "/srv/py")) < kinds.index(("bind", "/tmp"))


def test_image_venv_setting_replaces_the_checkouts_venv_for_kstudio_images(tmp_path: Path) -> None:
    from kstudio_localcluster.nodeagent.config import parse_config

    base = {"kubeconfig": "k", "nodeName": "n", "nodeIP": "10.244.0.1", "podCIDR": "10.244.0.0/24",
            "bridge": "kst0", "stateDir": str(tmp_path), "repo": str(tmp_path)}  # fmt: skip
    assert parse_config(base).venv == tmp_path / ".venv"
    wheel_venv = tmp_path / "image-venvs" / "abc"
    cfg = parse_config({**base, "imageVenv": str(wheel_venv)})
    assert cfg.venv == wheel_venv
    assert resolve_image("kstudio:dev", cfg.venv).env["PATH"].startswith(f"{wheel_venv}/bin:")
