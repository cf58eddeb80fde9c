// Command weft-proxy is Weft's sidecar and gateway proxy.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"weft.dev/weft/internal/proxy/app"
	"weft.dev/weft/internal/proxy/runtimeenv"
)

func main() {
	// Before anything else: this may replace the process with itself,
	// started with the Go runtime settings the proxy needs.
	runtimeenv.Apply()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
