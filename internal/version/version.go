// Package version holds the build's version, stamped with -ldflags -X,
// and the build tags Weft's binaries are built with.
package version

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
// go build's (the Makefile's build lines say the same): without cgo the
// binaries are static, so a sidecar maps no C library (1.5-2 MB less
// resident memory per sidecar) and resolves names with Go's own resolver.
const BuildEnv = "CGO_ENABLED=0"
