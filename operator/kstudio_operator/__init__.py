"""Control plane: the kopf operator, the resource models and the CRDs generated from them.

Layers, highest first. A module imports from lower layers (and within its own package), never from a
higher one; modules sharing a layer (`a | b`) do not import each other. tests/unit/test_import_direction.py
checks it, as kopf's import-linter "layers" contract does:

    cli | crdgen            the commands `kstudio operator` and `kstudio crds`
    main                    kopf registrations: indexes, wake-ups, the reconciles of each kind
    handlers | finalizer    I/O per kind: observe (indexes, storage), decide, apply, post Events, write
                            status; deletion in the reconciles (our finalizer, kopf's retry rules)
    runtime | leader        the reconcile workers, per-process state, status writes, the retry policy;
                            leader election on a Lease
    kube | indexes |        the async API client; the watch-fed lookups; the work queue of object keys;
      workqueue |           kopf at thousands of objects (a linear start-up barrier, bounded own patches)
      kopf_scale
    metrics                 the operator's Prometheus metrics
    decisions               pure: decide(spec, status, observed, now) -> actions, Events, status
    builders                pure: child manifests and merge patches
    resources               the pydantic models of the four kinds (the CRDs' source)
    constants | settings    names shared by all; the operator's configuration from the environment
"""
