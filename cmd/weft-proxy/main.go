// Command weft-proxy is Weft's sidecar and gateway proxy.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"weft.dev/weft/internal/proxy/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
