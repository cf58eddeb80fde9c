package app

import (
	"context"
	"os"
	"time"

	"weft.dev/weft/internal/proxy/accesslog"
	"weft.dev/weft/internal/proxy/tracing"
)

// newTelemetry makes the config-driven access loggers (HTTP connection
// managers' access_log sinks) and the tracer (their tracing), whose
// metrics join the proxy's registry.
func (p *Proxy) newTelemetry() {
	stdout, stderr := p.cfg.stdout, p.cfg.stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	p.accessFiles = accesslog.NewFiles(stdout, stderr, 4096, p.log.With("component", "accesslog"))
	p.tracer = tracing.New(tracing.Options{Registerer: p.metrics.Registry, Logger: p.log.With("component", "tracing")})
}

// stopTelemetry flushes the access logs and exports the queued spans
// (for at most two seconds).
func (p *Proxy) stopTelemetry() {
	p.accessFiles.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.tracer.Shutdown(ctx); err != nil {
		p.log.Warn("tracing: spans left unexported at shutdown", "error", err)
	}
}
