//go:build tools

// Package tools pins kwok, the simulated-node controller the local cluster adds fake nodes with.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
