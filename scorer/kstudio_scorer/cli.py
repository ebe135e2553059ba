"""`kstudio serve`: run the scorer (FastAPI on uvicorn, one process per pod).

Exit codes: 0 after a clean shutdown (SIGTERM: drain for KSTUDIO_DRAIN_SECONDS — not ready, still
serving, every response with `Connection: close` — then stop accepting and finish in-flight requests
within KSTUDIO_SHUTDOWN_GRACE_SECONDS; see http/drain.py); 2 when the configuration or the model is wrong
(digest mismatch, unreadable artifact: do not retry); 75 when object storage was unreachable (a restart
may help). The reason is printed and written to the termination log.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kstudio_core.exitcodes import EXIT_INPUT_ERROR, TERMINATION_LOG

if TYPE_CHECKING:
    from kstudio_scorer.model.served_model import ModelLoadError
    from kstudio_scorer.settings import ScorerSettings

log = logging.getLogger("kstudio_scorer")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kstudio serve",
        description="Serve one .ilearner model over HTTP (Azure RRS /score, the Azure ML Studio (classic) "
        "routes /workspaces/{ws}/services/{svc}/execute and .../jobs, OIP V2, batch /jobs). "
        "Every option is also a KSTUDIO_* environment variable.",
    )
    p.add_argument("--model-uri", help="s3://bucket/key.ilearner or a local path (KSTUDIO_MODEL_URI)")
    p.add_argument("--model-sha256", help="expected sha256 of the artifact (KSTUDIO_MODEL_SHA256)")
    p.add_argument("--model-name", help="name under /v2/models/ (KSTUDIO_MODEL_NAME)")
    p.add_argument("--host", help="listen address (KSTUDIO_HOST, default 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (KSTUDIO_PORT, default 8080)")
    p.add_argument("--keys-dir", help="directory with primaryKey/secondaryKey files (KSTUDIO_KEYS_DIR)")
    p.add_argument(
        "--no-auth", action="store_true", help="disable auth explicitly (KSTUDIO_AUTH_ENABLED=false)"
    )
    p.add_argument("--log-level", default=os.environ.get("KSTUDIO_LOG_LEVEL", "info"))
    return p


def write_termination_log(path: Path | None, message: str) -> None:
    if path is None:
        return
    try:
        with path.open("w") as f:
            f.write(message[:4000])
    except OSError:
        pass  # not in a pod, or not writable: stderr has it anyway


def tune_gc_for_serving() -> None:
    """Called once the model is loaded, in the serving process only (main() disabled the collector).

    Everything allocated so far (libraries, the model) lives as long as the process: freeze it out of
    the collector's sight, so full collections under load do not walk it (they cost tens of ms of tail
    latency). No collection first: start-up leaves only a few thousand cyclic garbage objects (well
    under 1 MiB) and collecting them would delay Ready by ~0.2 s. Requests allocate many short-lived
    containers: collect the young generation less often.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    gc.enable()


def main(argv: list[str]) -> int:
    # Start-up (imports, loading the model) allocates a few million objects that live as long as the
    # process; collecting cycles while they pile up costs ~10% of the time to Ready. tune_gc_for_serving
    # collects once and re-enables the collector when the model is ready.
    gc.disable()
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    overrides: dict[str, object] = {}
    for name in ("model_uri", "model_sha256", "model_name", "host", "port", "keys_dir"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.no_auth:
        overrides["auth_enabled"] = False
    import pydantic

    from kstudio_core.environment import env_name
    from kstudio_scorer.settings import ScorerSettings

    try:
        settings = ScorerSettings(**overrides)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{env_name('_'.join(str(p) for p in e['loc']) or 'settings')}: {e['msg']}" for e in exc.errors()
        )
        message = f"invalid scorer configuration: {problems}"
        print(message, file=sys.stderr)
        write_termination_log(Path(TERMINATION_LOG), message)
        return EXIT_INPUT_ERROR
    return serve(settings, args.log_level)


def serve(settings: ScorerSettings, log_level: str) -> int:
    """Run uvicorn until SIGTERM (exit 0) or a model that cannot load (its exit code)."""
    import uvicorn

    from kstudio_scorer.http.app import create_app
    from kstudio_scorer.http.drain import DrainingServer, DrainMiddleware
    from kstudio_scorer.http.state import ScorerState

    app = create_app(settings)
    state: ScorerState = app.state.kstudio
    drain = state.drain
    app.add_middleware(DrainMiddleware, drain=drain)  # outermost: sees every response
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="none",  # no websocket routes: skip importing a websocket library at start
        lifespan="on",
        access_log=False,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        server_header=False,
    )
    server = DrainingServer(
        config, drain, serving=lambda: bool(state.ready), on_drain=lambda: state.metrics.ready.set(0)
    )
    failure: list[ModelLoadError] = []

    def on_load_failure(exc: ModelLoadError) -> None:
        failure.append(exc)
        server.should_exit = True

    state.on_load_failure = on_load_failure
    state.on_ready = tune_gc_for_serving
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, with the handlers that were installed
    # before it started; no-op handlers make a clean shutdown exit 0 instead of dying by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
    if failure:
        message = f"model {failure[0].model or settings.model_name} failed to load: {failure[0]}"
        print(message, file=sys.stderr)
        write_termination_log(settings.termination_log, message)
        return failure[0].exit_code
    return 0
