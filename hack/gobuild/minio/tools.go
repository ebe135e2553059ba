//go:build tools

// Package tools pins the MinIO server the local cluster builds from source.
package tools

import _ "github.com/minio/minio"
