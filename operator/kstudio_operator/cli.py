"""`kstudio operator`: run the kopf operator (standalone, one replica).

Environment: KUBECONFIG or in-cluster credentials; KSTUDIO_S3_ENDPOINT and keys (or
KSTUDIO_S3_CREDENTIALS_DIR) for verifying artifacts; KSTUDIO_S3_POD_ENDPOINT for what pods use;
KSTUDIO_IMAGE for the training and scorer pods (default `kstudio:<this version>`); KSTUDIO_RESYNC_SECONDS
(the safety-net resync, default 300).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kstudio operator", description="run the kstudio operator")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument(
        "--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))

    import kopf

    kopf.configure(verbose=args.verbose)
    import kstudio_operator.main  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=tuple(args.namespace),
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
