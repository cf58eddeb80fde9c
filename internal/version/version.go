// Package version holds the build's version, stamped with -ldflags -X,
// and the build tags Weft's binaries are built with.
package version

import (
	"debug/buildinfo"
	"fmt"
	"strings"
)

// Version is the release or git description of this build.
var Version = "dev"

// BuildTags are the tags every build of weft and weft-proxy uses (the
// Makefile's TAGS says the same). grpcnotrace keeps grpc-go from linking
// golang.org/x/net/trace, whose html/template makes the linker keep every
// exported method of every type used in an interface, protobuf's
// generated validators included: about 14 MB of weft-proxy's 39 MB, and
// most of its file-backed resident memory.
const BuildTags = "grpcnotrace"

// BuildEnv is the environment every build of weft and weft-proxy adds to
// go build's (the Makefile's build lines and bench/pack.sh set the same;
// the end-to-end tests check it in the binaries they build): without cgo
// the binaries are static, so a sidecar maps no C library (about 1.3 MB of
// file pages, 1-2 MB less resident memory per sidecar). Names resolve with
// Go's own resolver: /etc/hosts, /etc/resolv.conf and the files and dns
// sources of /etc/nsswitch.conf, not other NSS sources (myhostname, mdns,
// sss, ldap), and GODEBUG=netdns=cgo cannot bring the C resolver back.
//
// It is one variable (callers append it to an environment as one entry),
// and one that the binary's build settings record (CheckBinary reads it
// back).
const BuildEnv = "CGO_ENABLED=0"

// CheckBinary reports an error unless the Go binary at path was built
// with BuildTags and BuildEnv, as its embedded build settings record them.
func CheckBinary(path string) error {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return err
	}
	want := map[string]string{"-tags": BuildTags}
	for _, kv := range strings.Fields(BuildEnv) {
		k, v, _ := strings.Cut(kv, "=")
		want[k] = v
	}
	got := map[string]string{}
	for _, s := range info.Settings {
		got[s.Key] = s.Value
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Errorf("%s: built with %s=%q, want %q (internal/version.BuildTags, BuildEnv)", path, k, got[k], v)
		}
	}
	return nil
}
