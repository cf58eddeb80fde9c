// Package spiffesource opens the SPIFFE Workload API (a SPIRE agent's
// socket, or any other implementation) as go-spiffe X509Sources with
// Weft's logging and retry policy. The sidecar uses it for its SVID, the
// control plane for the trust bundle its CA port trusts client
// certificates from.
//
// It imports go-spiffe and the standard library only, so it stays out of
// the way of the sidecar's import-graph check.
package spiffesource

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// SocketEnv is the environment variable SPIFFE names for the Workload
// API's address.
const SocketEnv = workloadapi.SocketEnv

// CheckAddr checks a Workload API address (unix:///path or
// tcp://ip:port); flag is the name to give in the error.
func CheckAddr(flag, addr string) error {
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return fmt.Errorf("%s %q: %w (want unix:///path/to/agent.sock or tcp://127.0.0.1:port)", flag, addr, err)
	}
	return nil
}

// Open connects to the Workload API at addr and returns once the first
// X.509 context (SVIDs and bundles) arrived, or ctx ended. While the
// agent refuses (no registration entry matches the caller yet) or cannot
// be reached, it retries from 500 ms doubling to 5 s, logging each
// failure on log with what to do. pick, if not nil, chooses the SVID
// among several. The caller closes the source.
func Open(ctx context.Context, addr string, log *slog.Logger, pick func([]*x509svid.SVID) *x509svid.SVID) (*workloadapi.X509Source, error) {
	opts := []workloadapi.X509SourceOption{
		workloadapi.WithClientOptions(
			workloadapi.WithAddr(addr),
			workloadapi.WithLogger(slogAdapter{log}),
			workloadapi.WithBackoffStrategy(backoffStrategy{}),
		),
	}
	if pick != nil {
		opts = append(opts, workloadapi.WithDefaultX509SVIDPicker(pick))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("SPIFFE Workload API at %s: %w", addr, err)
	}
	return src, nil
}

// backoff retries from 500 ms, doubling to 5 s: a workload registered
// while it waits gets its SVID within seconds of the agent learning of
// the entry (go-spiffe's default grows to 30 s).
type backoff struct{ n int }

func (b *backoff) Next() time.Duration {
	d := min(500*time.Millisecond<<min(b.n, 4), 5*time.Second)
	b.n++
	return d
}

func (b *backoff) Reset() { b.n = 0 }

type backoffStrategy struct{}

func (backoffStrategy) NewBackoff() workloadapi.Backoff { return &backoff{} }

// slogAdapter gives go-spiffe's client a slog logger. Its failures are
// retried, so they are warnings; a refusal for want of a registration
// entry says what to do.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Debugf(format string, args ...any) { a.log.Debug(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Infof(format string, args ...any)  { a.log.Info(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Warnf(format string, args ...any)  { a.log.Warn(fmt.Sprintf(format, args...)) }
func (a slogAdapter) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, "PermissionDenied") {
		a.log.Warn(msg+"; retrying", "what_to_do", "the agent has no registration entry whose selectors match this process: create one for its SPIFFE ID (spire-server entry create)")
		return
	}
	a.log.Warn(msg + "; retrying")
}
