"""A third-party OIP V2 client, unmodified: tritonclient's HTTP client against a real `kstudio serve`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from scorer_support import BuiltModel, ScorerProcess, start_scorer
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def servers(models: dict[str, BuiltModel], tmp_path_factory: pytest.TempPathFactory) -> Any:
    started: dict[str, ScorerProcess] = {}
    for name in ("forest", "classifier"):
        m = models[name]
        env = {
            "KSTUDIO_MODEL_URI": str(m.path),
            "KSTUDIO_MODEL_SHA256": m.sha256,
            "KSTUDIO_MODEL_NAME": name,
            "KSTUDIO_AUTH_ENABLED": "false",
        }
        started[name] = start_scorer(env, tmp_path_factory.mktemp(name))
    yield started
    for sp in started.values():
        sp.stop()


def client_for(sp: ScorerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{sp.port}")


def test_health_metadata_and_readiness(
    servers: dict[str, ScorerProcess], models: dict[str, BuiltModel]
) -> None:
    c = client_for(servers["forest"])
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("forest")
    assert not c.is_model_ready("nope")
    meta = c.get_model_metadata("forest")
    assert meta["name"] == "forest" and meta["versions"] == [models["forest"].sha256]
    assert [i["name"] for i in meta["inputs"]] == [f"f{i}" for i in range(6)]
    assert c.get_server_metadata()["name"] == "kstudio-scorer"
    c.close()


@pytest.mark.parametrize("binary", [True, False])
def test_infer_single_matrix_binary_and_json(
    servers: dict[str, ScorerProcess], models: dict[str, BuiltModel], binary: bool
) -> None:
    m = models["forest"]
    x = m.frame.head(17).to_numpy().astype(np.float32)
    inp = triton.InferInput("input-0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=binary),
        triton.InferRequestedOutput("predict_proba", binary_data=binary),
    ]
    c = client_for(servers["forest"])
    result = c.infer("forest", [inp], outputs=outputs, request_id="r-17")
    assert result.get_response()["id"] == "r-17"
    assert np.array_equal(result.as_numpy("predict"), m.pipeline.predict(x))
    assert np.allclose(result.as_numpy("predict_proba"), m.pipeline.predict_proba(x))
    c.close()


def test_infer_named_columns_with_strings_and_booleans(
    servers: dict[str, ScorerProcess], models: dict[str, BuiltModel]
) -> None:
    m = models["classifier"]
    df = m.frame.head(9)
    inputs = []
    for name, datatype, values in (
        ("bill_length_mm", "FP64", df.bill_length_mm.to_numpy()),
        ("flipper_count", "INT64", df.flipper_count.to_numpy().astype(np.int64)),
        ("island", "BYTES", df.island.to_numpy().astype(np.object_)),
        ("male", "BOOL", df.male.to_numpy()),
    ):
        inp = triton.InferInput(name, [len(df)], datatype)
        inp.set_data_from_numpy(values)
        inputs.append(inp)
    c = client_for(servers["classifier"])
    result = c.infer("classifier", inputs)  # no outputs requested: all of them
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict")]
    assert labels == m.pipeline.predict(df).tolist()
    assert result.as_numpy("predict_proba").shape == (9, 3)
    with pytest.raises(InferenceServerException, match="island"):
        bad = triton.InferInput("island", [len(df)], "FP64")
        bad.set_data_from_numpy(np.zeros(len(df)))
        c.infer("classifier", [*inputs[:2], bad, inputs[3]])
    c.close()
