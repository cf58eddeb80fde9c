package httpproxy

import (
	"math"
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

// A client's grpc-timeout is read as gRPC's wire format has it; anything
// else is no timeout at all, and a huge one never wraps round to a short
// (or negative) bound.
func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"100m", 100 * time.Millisecond, true},
		{"5S", 5 * time.Second, true},
		{"2M", 2 * time.Minute, true},
		{"1H", time.Hour, true},
		{"250u", 250 * time.Microsecond, true},
		{"7n", 7, true},
		{"0m", 0, true},
		{"99999999m", 99999999 * time.Millisecond, true},
		{"99999999H", math.MaxInt64, true}, // past a Duration: saturates
		{"3000000H", math.MaxInt64, true},  // just past it
		{"2562047H", 2562047 * time.Hour, true},
		{"123456789m", 0, false}, // 9 digits
		{"m", 0, false},
		{"", 0, false},
		{"10", 0, false},  // no unit
		{"10s", 0, false}, // units are case-sensitive
		{"-5S", 0, false},
		{"+5S", 0, false},
		{" 5S", 0, false},
		{"5 S", 0, false},
		{"1.5S", 0, false},
	} {
		got, ok := grpcTimeout(tc.v)
		if got != tc.want || ok != tc.ok {
			t.Errorf("grpcTimeout(%q) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}
