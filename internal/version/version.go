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
