//go:build tools

// Package tools records the commands this module builds, so that `go mod tidy` keeps their dependencies.
// scripts/control-plane.sh runs `go build k8s.io/kubernetes/cmd/kube-apiserver` in this folder.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
