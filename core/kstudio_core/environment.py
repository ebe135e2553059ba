"""The KSTUDIO_* environment: how its values are spelled, and what the operator gives scorer and trainer pods.

- `parse_flag` is the one reading of a yes/no setting (`Flag` for a pydantic field); `parse_endpoint` the
  one reading of an object-store address, with or without `http://` / `https://`.
- `ScorerEnv`, `TrainerEnv` and `ShardEnv` are the environment of scorer, trainer and BatchJob shard pods
  as a typed table. The operator's builders fill one in and render it (`container_env`); the pods read the
  same names: `kstudio serve` through `ScorerSettings` (pydantic-settings with prefix ENV_PREFIX, one field
  per variable) and `StorageSettings.from_env`, `kstudio train` through `StorageSettings.from_env`,
  `kstudio score-shard` through `ShardSettings`. A variable
  is named `env_name(field)`, ENV_PREFIX + the field name in capitals, on both sides: a name is written
  nowhere but as a field here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from kstudio_core.ilearner import SHA256_HEX

ENV_PREFIX: Final = "KSTUDIO_"

_TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})


def env_name(field: str) -> str:
    """The variable that carries `field`: `s3_endpoint` -> `KSTUDIO_S3_ENDPOINT`."""
    return ENV_PREFIX + field.upper()


def parse_flag(value: str | bool) -> bool:
    """A yes/no setting: 1/true/yes/on or 0/false/no/off, in any case. ValueError for anything else, so a
    typo is an error rather than a silent "no"."""
    if isinstance(value, bool):
        return value
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not a yes/no value: use true/false, yes/no, on/off or 1/0")


def flag_text(value: bool) -> str:
    return "true" if value else "false"


# A boolean setting read with parse_flag (pydantic's own reading accepts more words).
Flag = Annotated[bool, BeforeValidator(parse_flag)]

LoggingLevel = Literal["None", "Error", "All"]


@dataclass(frozen=True)
class StoreAddress:
    """Where an S3 server listens: `host:port` (what the minio client takes) and whether it speaks TLS."""

    host_port: str
    secure: bool


def parse_endpoint(text: str, secure: bool = False) -> StoreAddress:
    """`https://host:port` is TLS, `http://host:port` plain HTTP; a bare `host:port` is TLS when `secure`.

    A written scheme wins over `secure`: whoever wrote `https://` means TLS, whatever a yes/no setting next
    to it says. ValueError for an empty address, another scheme, or a path after the address.
    """
    address = text.strip()
    scheme, separator, rest = address.partition("://")
    if separator:
        if scheme.lower() not in {"http", "https"}:
            raise ValueError(
                f"object store endpoint {text!r}: use host:port, http://host:port or https://..."
            )
        address, secure = rest, scheme.lower() == "https"
    address = address.rstrip("/")
    if not address:
        raise ValueError(f"object store endpoint {text!r} has no host")
    if "/" in address:
        raise ValueError(f"object store endpoint {text!r}: give host:port only, without a path")
    return StoreAddress(address, secure)


class FieldRef(BaseModel):
    """A value the kubelet fills in from the pod's own object (the downward API), e.g. `metadata.name`."""

    model_config = ConfigDict(frozen=True)

    field_path: str


class PodEnv(BaseModel):
    """A table of environment variables: one field each, named by `env_name`; a field left None is not set.
    A field holding another PodEnv contributes its variables in its place."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def container_env(self) -> list[dict[str, Any]]:
        """The container's `env` list, in field order."""
        entries: list[dict[str, Any]] = []
        for field, value in self:
            if value is None:
                continue
            if isinstance(value, PodEnv):
                entries += value.container_env()
            elif isinstance(value, FieldRef):
                entries.append(
                    {"name": env_name(field), "valueFrom": {"fieldRef": {"fieldPath": value.field_path}}}
                )
            else:
                entries.append({"name": env_name(field), "value": _text(value)})
        return entries


def _text(value: object) -> str:
    if isinstance(value, bool):
        return flag_text(value)
    if isinstance(value, list):
        return json.dumps([_plain(v) for v in value])
    if isinstance(value, BaseModel):
        return json.dumps(_plain(value))
    return str(value)


def _plain(value: object) -> object:
    return value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value


class StorageEnv(PodEnv):
    """Where a pod finds the object store. Keys are never variables in a pod: they come from the storage
    Secret mounted at `s3_credentials_dir` (files accessKey and secretKey)."""

    s3_endpoint: str = Field(description="host:port of the S3 API as pods reach it")
    s3_secure: Flag = Field(default=False, description="TLS to the object store")
    s3_credentials_dir: str | None = None
    s3_region: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_address(cls, data: Any) -> Any:
        # An endpoint written with its scheme becomes host:port plus the flag the scheme implies, on the
        # writer's side and the reader's: the flag can never contradict the address.
        if not isinstance(data, dict) or not data.get("s3_endpoint"):
            return data
        try:
            secure = parse_flag(data.get("s3_secure", False))
        except ValueError:
            return data  # s3_secure's own validation names it
        address = parse_endpoint(str(data["s3_endpoint"]), secure)
        return data | {"s3_endpoint": address.host_port, "s3_secure": address.secure}

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> StorageEnv:
        """The table from a process environment (an empty value counts as unset). ValueError naming each
        variable that is missing or wrong."""
        values = {
            field: text for field in cls.model_fields if (text := environ.get(env_name(field), "").strip())
        }
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = env_name(str(error["loc"][-1])) if error["loc"] else env_name("s3_endpoint")
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"{name} is not set" if error["type"] == "missing" else f"{name}: {message}")
            raise ValueError("; ".join(problems)) from None


class TrainerEnv(PodEnv):
    """`kstudio train` takes its run on the command line; its environment only says where storage is."""

    storage: StorageEnv


class TrafficModel(BaseModel):
    """One model a scorer serves: the TrainedModel's name, its artifact and sha256, and its share of the
    requests in percent (the weights of a scorer's models sum to 100; one model alone weighs 100)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=253)
    uri: str = Field(min_length=1)
    sha256: str = Field(pattern=SHA256_HEX)
    weight: int = Field(default=100, ge=0, le=100)


class MirrorModel(BaseModel):
    """A model that scores a copy of `percent` % of a scorer's answered requests, off the request path,
    to compare its answers with those given (shadow scoring); its own answers are never returned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=253)
    uri: str = Field(min_length=1)
    sha256: str = Field(pattern=SHA256_HEX)
    percent: int = Field(default=100, ge=1, le=100)


def traffic_problems(traffic: list[TrafficModel]) -> list[str]:
    """What is wrong with a scorer's list of models ([] when nothing): empty, weights not summing to 100,
    a name or a sha256 listed twice. The CRD refuses these first; the scorer checks again what it is told."""
    if not traffic:
        return ["no model to serve"]
    problems = []
    if (total := sum(m.weight for m in traffic)) != 100:
        problems.append(f"the weights sum to {total}, not 100")
    for what, values in (("model", [m.name for m in traffic]), ("sha256", [m.sha256 for m in traffic])):
        if twice := sorted({v for v in values if values.count(v) > 1}):
            problems.append(f"{what} listed twice: {', '.join(twice)}")
    return problems


class ScorerEnv(PodEnv):
    """What `kstudio serve` is told by the operator (ScorerSettings documents each; more have defaults)."""

    traffic: list[TrafficModel] = Field(min_length=1)
    mirror: MirrorModel | None = None
    model_name: str
    port: int
    storage: StorageEnv
    auth_enabled: Flag
    keys_dir: str
    max_concurrent_calls: int
    logging_level: LoggingLevel
    sample_data: Flag
    max_model_bytes: int
    logging_uri: str
    output_columns: list[str]
    output_include_inputs: Flag
    jobs_store_uri: str
    pod_name: FieldRef
    drain_seconds: int
    shutdown_grace_seconds: int
    model_dir: str
    jobs_work_dir: str


class ShardEnv(PodEnv):
    """What `kstudio score-shard` is told by the operator (one pod of a BatchJob's Indexed Job). The job
    itself (inputs, output, shard count, threshold) is in the plan document at `batch_plan_uri`; the
    pod's index is JOB_COMPLETION_INDEX, set by the Job controller (kstudio_core.batch)."""

    batch_plan_uri: str
    model_uri: str
    model_sha256: str = Field(pattern=SHA256_HEX)
    storage: StorageEnv
    model_dir: str
    max_model_bytes: int
    pod_name: FieldRef
