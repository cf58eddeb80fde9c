package spiffesource

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBackoff(t *testing.T) {
	b := backoffStrategy{}.NewBackoff()
	var got []time.Duration
	for range 7 {
		got = append(got, b.Next())
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	b.Reset()
	if d := b.Next(); d != 500*time.Millisecond {
		t.Errorf("after Reset: %s, want 500ms", d)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		wantErr string
	}{
		{addr: "unix:///run/spire/agent.sock"},
		{addr: "tcp://127.0.0.1:8081"},
		{addr: "/run/spire/agent.sock", wantErr: `--spiffe-socket "/run/spire/agent.sock"`},
		{addr: "tcp://localhost:8081", wantErr: "want unix:///path/to/agent.sock or tcp://127.0.0.1:port"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			err := CheckAddr("--spiffe-socket", tc.addr)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("CheckAddr(%q) = %v, want %q", tc.addr, err, tc.wantErr)
			}
		})
	}
}

// TestOpenWithoutAgent: with no agent at the address, Open retries (each
// failure logged as a warning) until its context ends, and says where it
// looked.
func TestOpenWithoutAgent(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addr := "unix://" + t.TempDir() + "/agent.sock"
	src, err := Open(ctx, addr, log, nil)
	if err == nil {
		src.Close()
		t.Fatal("Open succeeded with no agent")
	}
	if !strings.Contains(err.Error(), "SPIFFE Workload API at "+addr) {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestSlogAdapterSaysWhatToDo(t *testing.T) {
	var logs bytes.Buffer
	a := slogAdapter{slog.New(slog.NewTextHandler(&logs, nil))}
	a.Errorf("Failed to watch the Workload API: %v", "rpc error: code = PermissionDenied desc = no identity issued")
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "spire-server entry create") {
		t.Errorf("PermissionDenied logged as %q, want a warning saying to create an entry", out)
	}
}
