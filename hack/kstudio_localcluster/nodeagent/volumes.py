"""Pod volumes on the node: emptyDir, secret, configMap, downwardAPI and projected (incl. the service
account token from the TokenRequest API), written kubelet-style through an atomic `..data` symlink so a
refresh (Secret/ConfigMap changed, token near expiry) is seen whole by running containers."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .envvars import EnvError, PodFacts, field_ref, resource_ref

JSON = dict[str, Any]
Payload = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)
# (kind "secret"|"configmap", name) -> decoded data (bytes) or None when the object does not exist
BinaryLookup = Callable[[str, str], Mapping[str, bytes] | None]
TokenFetcher = Callable[[str, int], tuple[str, float]]  # (audience, expirationSeconds) -> (token, expires_at)


class VolumeError(Exception):
    """A volume cannot be set up (missing Secret/ConfigMap/key, unsupported type): FailedMount."""


def _items(
    data: Mapping[str, bytes], items: list[JSON] | None, default_mode: int, what: str, optional: bool
) -> Payload:
    out: Payload = {}
    if not items:
        for key, value in data.items():
            out[key] = (value, default_mode)
        return out
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise VolumeError(f"configmap/secret {what} has no key {item['key']!r}")
        out[item["path"]] = (data[item["key"]], int(item.get("mode", default_mode)))
    return out


def object_payload(kind: str, source: JSON, lookup: BinaryLookup, default_mode: int) -> Payload:
    name = source.get("secretName") if kind == "secret" else source.get("name")
    name = name or source.get("name", "")
    optional = bool(source.get("optional"))
    data = lookup(kind, name)
    if data is None:
        if optional:
            return {}
        raise VolumeError(f'{"secret" if kind == "secret" else "configmap"} "{name}" not found')
    return _items(data, source.get("items"), int(source.get("defaultMode", default_mode)), name, optional)


def downward_payload(pod: JSON, items: list[JSON], facts: PodFacts, default_mode: int) -> Payload:
    out: Payload = {}
    for item in items:
        try:
            if "fieldRef" in item:
                value = field_ref(pod, item["fieldRef"]["fieldPath"], facts)
            else:
                value = resource_ref(pod, item["resourceFieldRef"], "", facts)
        except EnvError as exc:
            raise VolumeError(str(exc)) from exc
        out[item["path"]] = (value.encode(), int(item.get("mode", default_mode)))
    return out


def decode_secret(obj: JSON) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def decode_configmap(obj: JSON) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def write_atomic(target: Path, payload: Payload, gid: int | None = None) -> bool:
    """Publish `payload` in `target` the way kubelet's AtomicWriter does; returns False if unchanged."""
    data_link = target / "..data"
    if data_link.exists():
        current: Payload = {}
        base = data_link.resolve()
        for path in base.rglob("*"):
            if path.is_file():
                current[str(path.relative_to(base))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
        if current == payload:
            return False
    stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    new_dir = target / stamp
    new_dir.mkdir(mode=0o755)
    for rel, (content, mode) in payload.items():
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise VolumeError(f"volume item path {rel!r} must be relative and must not contain '..'")
        dest = new_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        dest.write_bytes(content)
        os.chmod(dest, mode | (0o040 if gid is not None else 0))
        if gid is not None:
            os.chown(dest, -1, gid)
    old = data_link.resolve() if data_link.exists() else None
    tmp_link = target / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(stamp)
    os.replace(tmp_link, data_link)
    tops = {Path(rel).parts[0] for rel in payload}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            link.symlink_to(Path("..data") / top)
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in tops:
            entry.unlink()
    if old is not None and old.parent == target:
        shutil.rmtree(old, ignore_errors=True)
    return True


@dataclass
class TokenState:
    token: str = ""
    issued_at: float = 0.0
    expires_at: float = 0.0

    def needs_refresh(self, now: float) -> bool:
        """kubelet's rule: refresh after 80% of the lifetime (or 24 h) has passed."""
        if not self.token:
            return True
        lifetime = self.expires_at - self.issued_at
        return now >= self.issued_at + min(lifetime * 0.8, 24 * 3600)


class PodVolumes:
    """Materializes one pod's volumes under `root` and keeps them fresh."""

    def __init__(
        self,
        pod: JSON,
        root: Path,
        lookup: BinaryLookup,
        fetch_token: TokenFetcher,
        facts: PodFacts,
    ) -> None:
        self.pod = pod
        self.root = root
        self.lookup = lookup
        self.fetch_token = fetch_token
        self.facts = facts
        self.tokens: dict[tuple[str, str], TokenState] = {}
        self.paths: dict[str, Path] = {}
        fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        self.gid: int | None = int(fs_group) if fs_group is not None else None

    def _token(self, volume: str, source: JSON) -> bytes:
        key = (volume, source.get("path", "token"))
        state = self.tokens.setdefault(key, TokenState())
        now = time.time()
        if state.needs_refresh(now):
            token, expires = self.fetch_token(
                source.get("audience", ""), int(source.get("expirationSeconds", 3600))
            )
            state.token, state.issued_at, state.expires_at = token, now, expires
        return state.token.encode()

    def payload(self, volume: JSON) -> Payload | None:
        """What the volume should contain, or None for emptyDir (left to the containers)."""
        if "emptyDir" in volume:
            return None
        if "secret" in volume:
            return object_payload("secret", volume["secret"], self.lookup, 0o644)
        if "configMap" in volume:
            return object_payload("configmap", volume["configMap"], self.lookup, 0o644)
        if "downwardAPI" in volume:
            src = volume["downwardAPI"]
            return downward_payload(
                self.pod, src.get("items") or [], self.facts, int(src.get("defaultMode", 0o644))
            )
        if "projected" in volume:
            src = volume["projected"]
            mode = int(src.get("defaultMode", 0o644))
            out: Payload = {}
            for s in src.get("sources") or []:
                if "serviceAccountToken" in s:
                    sat = s["serviceAccountToken"]
                    out[sat["path"]] = (self._token(volume["name"], sat), mode)
                elif "secret" in s:
                    out.update(object_payload("secret", s["secret"], self.lookup, mode))
                elif "configMap" in s:
                    out.update(object_payload("configmap", s["configMap"], self.lookup, mode))
                elif "downwardAPI" in s:
                    out.update(
                        downward_payload(self.pod, s["downwardAPI"].get("items") or [], self.facts, mode)
                    )
            return out
        kinds = sorted(set(volume) - {"name"})
        raise VolumeError(f"volume {volume['name']!r}: type {kinds} is not supported by the local node agent")

    def sync(self) -> bool:
        """Create or refresh every volume; returns True if any content changed. Raises VolumeError."""
        changed = False
        for volume in self.pod["spec"].get("volumes") or []:
            path = self.root / volume["name"]
            if not path.exists():
                path.mkdir(parents=True, mode=0o755)
                if "emptyDir" in volume:
                    os.chmod(path, 0o777)  # noqa: S103 - emptyDir is world-writable, as kubelet makes it
                if self.gid is not None:
                    os.chown(path, -1, self.gid)
                    os.chmod(path, 0o2777 if "emptyDir" in volume else 0o2755)
            self.paths[volume["name"]] = path
            payload = self.payload(volume)
            if payload is not None:
                changed |= write_atomic(path, payload, self.gid)
        return changed

    def host_path(self, volume_name: str, sub_path: str = "") -> Path:
        if volume_name not in self.paths:
            raise VolumeError(f"volumeMount refers to unknown volume {volume_name!r}")
        base = self.paths[volume_name]
        if not sub_path:
            return base
        if sub_path.startswith("/") or ".." in Path(sub_path).parts:
            raise VolumeError(f"subPath {sub_path!r} must be a relative path without '..'")
        target = (base / sub_path).resolve()
        if not str(target).startswith(str(base.resolve())):
            raise VolumeError(f"subPath {sub_path!r} escapes volume {volume_name!r}")
        if not target.exists():
            target.mkdir(parents=True, mode=0o777)
            os.chmod(target, 0o777)  # noqa: S103 - subPath dirs like emptyDir
        return target
