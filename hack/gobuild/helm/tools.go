//go:build tools

// Package tools pins the Helm CLI the chart test renders and installs the chart with.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
