"""KServe's Python model server with a scikit-learn model class shaped like KServe's own sklearnserver
(load a joblib file; predict with `get_predict_input` / `get_predict_response`). Runs in the KServe bench
venv (`servers.ensure_kserve_venv`), never in the project's .venv.

    python kserve_sklearn.py --model_path model.joblib --model_name lr --http_port 8080 --grpc_port 8081
"""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import kserve
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.ready = False

    def load(self) -> bool:
        self._model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict(instances), self.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--http_port", type=int, required=True)
    parser.add_argument("--grpc_port", type=int, required=True)
    args = parser.parse_args()
    model = SKLearnModel(args.model_name, args.model_path)
    model.load()
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=1).start([model])


if __name__ == "__main__":
    main()
