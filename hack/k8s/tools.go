//go:build tools

// Package k8s pins the upstream Kubernetes binaries that the local cluster and
// the kube-proxy side-by-side bench run. It is its own module so that the
// Kubernetes dependency graph never leaks into Switchyard's go.mod; the blank
// imports below only exist so that `go mod tidy` here keeps every module the
// three commands need in go.sum.
package k8s

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
