// Package demo holds the configuration of Weft's built-in demo mesh, the
// bookinfo-like shop that `weft up` runs when it is given no -f.
package demo

import "embed"

// Files holds the demo's YAML: workloads, the ingress gateway and the
// traffic rules.
//
//go:embed *.yaml
var Files embed.FS
