// Command weft is Weft's CLI, control plane and local mesh runtime.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"weft.dev/weft/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
