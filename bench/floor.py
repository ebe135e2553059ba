"""The floor: the scorer's HTTP stack (uvicorn, uvloop, httptools, the settings `kstudio serve` uses)
answering every POST with a precomputed body and no model at all. What is left between it and the
scorer is our own per-request work.

    python floor.py <port> <responses.json>     # {"<request body length>": "<file with the answer>"}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn

HEADERS = [(b"content-type", b"application/json")]


def make_app(answers: dict[int, bytes]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = answers.get(size, b"{}")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    port, table = int(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    answers = {int(size): Path(path).read_bytes() for size, path in table.items()}
    uvicorn.run(
        make_app(answers),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
