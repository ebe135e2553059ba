"""Pure functions from specs to child manifests and decisions. No I/O: unit-tested without a cluster."""
