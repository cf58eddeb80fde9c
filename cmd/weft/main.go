// Command weft is Weft's CLI, control plane and local mesh runtime.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"weft.dev/weft/internal/cli"
	"weft.dev/weft/internal/proxy/runtimeenv"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "proxy" {
		// As weft-proxy does, before signal handling: this may replace
		// the process with itself, started with the runtime settings the
		// proxy needs.
		runtimeenv.Apply()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
