"""The local control plane for dev and tests: real Kubernetes components plus our node agent.

    make cluster-up            # = kstudio-dev cluster up; prints `export KUBECONFIG=.../cluster/kubeconfig`
    kstudio-dev cluster status # each component's pid and RSS; exit 0 when the API server is ready
    make cluster-down          # stops everything; no process, netns, veth, cgroup or nftables table is left

Everything runs in network namespace `kstudio` (bridge kst0, node IP 10.244.0.1, pods 10.244.0.0/24,
services 10.96.0.0/16, no route outside); 127.0.0.1:6443 (API) and 127.0.0.1:9000 (MinIO) on the host
are forwards into it. Files live in $KSTUDIO_CACHE/cluster (default ~/.cache/kstudio/cluster): kubeconfig,
minio.json, node-agent.json, state.json, pki/, logs/<component>.log, run/<component>.pid.json.

Modules: layout (names, addresses, paths), certs (openssl PKI), kubeconfig, netns (iproute2 + setns),
processes (pidfiles), components (command lines), forward (host -> netns TCP forward), health (readiness
checks), sessions (lock, pytest sessions as users, state files), cluster (ensure_up / release / teardown /
status), cleanup (teardown and leftovers), hosttools (the host programs it runs and their Debian packages),
imagevenv (the product wheel in a clean venv, as the image holds it), fakenodes (kwok's simulated nodes,
`cluster up --fake-nodes N`), cli and devcli (`kstudio-dev`),
nodeagent (the kubelet stand-in). This package is the dev distribution `kstudio-dev` (hack/pyproject.toml),
never part of the product wheel or image.
"""
