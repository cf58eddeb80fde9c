package httpproxy

import (
	"testing"
	"time"
)

// A stream bound sent upstream as grpc-timeout fits the header's 8 digits
// and never says less than the bound.
func TestFormatGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0m"},
		{time.Nanosecond, "1m"},
		{200 * time.Millisecond, "200m"},
		{1500 * time.Microsecond, "2m"},
		{10 * time.Second, "10000m"},
		{99999999 * time.Millisecond, "99999999m"},
		{100000000 * time.Millisecond, "100000S"},
		{1000 * time.Hour, "3600000S"},
		{200000 * time.Hour, "12000000M"},
		{2000000 * time.Hour, "2000000H"},
	} {
		got := formatGRPCTimeout(tc.d)
		if got != tc.want {
			t.Errorf("formatGRPCTimeout(%v) = %q, want %q", tc.d, got, tc.want)
			continue
		}
		if back, ok := grpcTimeout(got); !ok || back < tc.d {
			t.Errorf("grpcTimeout(%q) = %v, %v; want at least %v", got, back, ok, tc.d)
		}
	}
}
