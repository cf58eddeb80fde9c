// Package proxyconfig turns the Envoy xDS v3 resources the Weft sidecar
// receives into plain, validated Go structs. Nothing outside this package
// reads protos on the data path: a resource that fails validation returns an
// error naming the resource and the field, and the xDS client NACKs it.
//
// Fields of Envoy's API that would change behaviour but are not enforced yet
// are accepted and listed in the resource's Unenforced field, so callers can
// log them; they are never silently dropped.
package proxyconfig
