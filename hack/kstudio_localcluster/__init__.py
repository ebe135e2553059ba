"""The local control plane for dev and tests: real Kubernetes components plus our node agent."""
