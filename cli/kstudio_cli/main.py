"""`kstudio <subcommand>`: dispatches to the component that owns the subcommand.

Each component registers its subcommand in `SUBCOMMANDS` as "module:function"; the module is imported
only when its subcommand runs, so `kstudio serve` never imports kopf and `kstudio train` never imports
FastAPI. Each function takes the remaining argv and returns a process exit code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:function", one-line help)
}


def register(name: str, target: str, help_text: str) -> None:
    SUBCOMMANDS[name] = (target, help_text)


register("train", "kstudio_trainer.cli:main", "run one training run of an experiment snapshot")
register("serve", "kstudio_scorer.cli:main", "serve a trained model (.ilearner) over HTTP")
register("score-shard", "kstudio_scorer.shard_cli:main", "score one shard of a BatchJob (its Job's pods)")
register("operator", "kstudio_operator.cli:main", "run the kopf operator")
register("report", "kstudio_cli.report:report_main", "write a TrainedModel's evaluation report as HTML")
register(
    "compare", "kstudio_cli.report:compare_main", "compare two TrainedModels: metrics, deltas, gate, curves"
)
register(
    "console",
    "kstudio_cli.console:console_main",
    "the read-only web console (experiments, models, endpoints)",
)
register("crds", "kstudio_operator.crdgen:main", "generate crds/*.yaml from the resource models")


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: kstudio <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {n.ljust(width)}  {h}" for n, (_, h) in sorted(SUBCOMMANDS.items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"kstudio: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = SUBCOMMANDS[name][0].split(":")
    func: Callable[[list[str]], int] = getattr(importlib.import_module(module_name), func_name)
    return func(rest)


if __name__ == "__main__":
    sys.exit(main())
