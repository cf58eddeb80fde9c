// Package version holds the build's version, stamped with -ldflags -X.
package version

// Version is the release or git description of this build.
var Version = "dev"
