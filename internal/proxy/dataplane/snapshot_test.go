package dataplane_test

import (
	"testing"

	"weft.dev/weft/internal/proxy/dataplane"
	"weft.dev/weft/internal/proxy/proxyconfig"
	"weft.dev/weft/internal/proxy/proxytest"
)

func TestMatchChain(t *testing.T) {
	l, err := proxyconfig.ParseListener(proxytest.Listener("virtualOutbound", "127.0.0.1:0",
		proxytest.Chain{Port: 9080, Filter: proxytest.HCMRDS("9080")},
		proxytest.Chain{Port: 3306, ServerNames: []string{"mysql", "mysql.db.svc.cluster.local"}, Prefixes: []string{"10.0.0.3/32"}, Filter: proxytest.TCPProxy("mysql")},
		proxytest.Chain{Port: 3306, ServerNames: []string{"*.example.com"}, Filter: proxytest.TCPProxy("wild")},
		proxytest.Chain{Port: 3306, Prefixes: []string{"10.1.0.0/16"}, Filter: proxytest.TCPProxy("range")},
		proxytest.Chain{Filter: proxytest.TCPProxy("any-port")},
	))
	if err != nil {
		t.Fatal(err)
	}
	cl := &dataplane.Listener{Config: l}
	for _, fc := range l.FilterChains {
		cl.Chains = append(cl.Chains, &dataplane.Chain{Config: fc})
	}
	name := func(ch *dataplane.Chain) string {
		switch {
		case ch == nil:
			return "<nil>"
		case ch.Config.HTTP != nil:
			return "http:" + ch.Config.HTTP.RDSName
		}
		return ch.Config.TCP.Cluster
	}
	tests := []struct {
		port uint32
		host string
		want string
	}{
		{9080, "reviews", "http:9080"},
		{3306, "mysql", "mysql"},
		{3306, "MYSQL.db.svc.cluster.local.", "mysql"},
		{3306, "10.0.0.3", "mysql"},
		{3306, "10.1.2.3", "range"},
		{3306, "db.example.com", "wild"},
		{3306, "unknown", "any-port"},
		{5432, "pg", "any-port"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			if got := name(cl.MatchChain(tc.port, tc.host)); got != tc.want {
				t.Errorf("MatchChain(%d, %q) = %s, want %s", tc.port, tc.host, got, tc.want)
			}
		})
	}
}
