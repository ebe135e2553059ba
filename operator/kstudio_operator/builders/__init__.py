"""Pure functions from specs to child manifests and merge patches. No I/O: unit-tested without a cluster."""
