//go:build tools

// Package tools pins the etcd server the local cluster builds from source.
package tools

import _ "go.etcd.io/etcd/server/v3"
