package controlplane

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestAdminAddrMustBeLoopback: the admin API (apply, CA rotation, tap)
// has no authentication yet, so the control plane refuses to serve it
// where other hosts may reach it unless told to, and says how.
func TestAdminAddrMustBeLoopback(t *testing.T) {
	tests := []struct {
		name, addr string
		allow      bool
		err        string // "" when it starts
	}{
		{name: "all interfaces", addr: "0.0.0.0:0", err: "--admin-addr 0.0.0.0:0 is not a loopback address"},
		{name: "no host is all interfaces", addr: ":0", err: "--admin-addr :0 is not a loopback address"},
		{name: "IPv6 any", addr: "[::]:0", err: "is not a loopback address"},
		{name: "a host's address", addr: "192.0.2.1:15014", err: "pass --admin-allow-remote to accept that risk"},
		{name: "a host name", addr: "weft.example:15014", err: "serve it on 127.0.0.1 (the default)"},
		// With the opt-in the check is passed: binding then fails because
		// the address is not this host's (no test binds every interface).
		{name: "opt-in lifts the check", addr: "192.0.2.1:15014", allow: true, err: "listening for the admin API on 192.0.2.1:15014"},
		{name: "loopback", addr: "127.0.0.1:0"},
		{name: "localhost", addr: "localhost:0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{ConfigDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: tc.addr, AdminAllowRemote: tc.allow}
			if tc.err == "" {
				cp := startCPWith(t, opts)
				resp, err := http.Get("http://" + cp.AdminAddr() + "/ready")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return
			}
			opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			cp, err := New(opts)
			if err == nil {
				cp.xdsLn.Close()
				cp.adminLn.Close()
				cp.xds.Stop()
				t.Fatalf("New with admin address %s started; want an error", tc.addr)
			}
			if !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %q, want it to contain %q", err, tc.err)
			}
		})
	}
}
