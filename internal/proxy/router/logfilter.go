package router

import (
	"slices"
	"strings"
	"time"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// GRPCUnknown is gRPC's UNKNOWN status, a request's gRPC status when
// nothing says otherwise.
const GRPCUnknown = 2

// LogInput is what an access log filter tests: a finished request or
// connection.
type LogInput struct {
	// Request is the HTTP request; nil for a TCP connection, whose header
	// filters see no headers.
	Request *Request
	// Code is the response status, 0 when none was sent.
	Code int
	// Duration is the request's duration.
	Duration time.Duration
	// Flags are the response flags, comma-separated.
	Flags string
	// GRPCStatus is the gRPC status: grpc-status when the response had
	// one, else derived from Code; 2 (UNKNOWN) when neither is known, as
	// Envoy's grpc_status_filter takes it.
	GRPCStatus int
}

// Logged reports whether f passes the request: whether it is logged.
func Logged(f *proxyconfig.LogFilter, in *LogInput) bool {
	switch f.Kind {
	case proxyconfig.LogAnd:
		for i := range f.Filters {
			if !Logged(&f.Filters[i], in) {
				return false
			}
		}
		return true
	case proxyconfig.LogOr:
		for i := range f.Filters {
			if Logged(&f.Filters[i], in) {
				return true
			}
		}
		return false
	case proxyconfig.LogStatus:
		return compare(int64(in.Code), f.Op, f.Value)
	case proxyconfig.LogDuration:
		return compare(in.Duration.Milliseconds(), f.Op, f.Value)
	case proxyconfig.LogHeader:
		if in.Request == nil {
			// No headers: only an absence test passes.
			m := &f.Header
			return m.Match.Kind == proxyconfig.MatchPresent && m.Present == m.Invert
		}
		return matchHeader(headerKey{key: f.HeaderKey, m: &f.Header}, *in.Request)
	case proxyconfig.LogResponseFlags:
		if in.Flags == "" || in.Flags == "-" {
			return false
		}
		if len(f.Flags) == 0 {
			return true
		}
		for flag := range strings.SplitSeq(in.Flags, ",") {
			if slices.Contains(f.Flags, flag) {
				return true
			}
		}
		return false
	case proxyconfig.LogGRPCStatus:
		return slices.Contains(f.GRPCStatuses, in.GRPCStatus) != f.Exclude
	}
	return true
}

func compare(v int64, op int, n int64) bool {
	switch op {
	case proxyconfig.CompareGE:
		return v >= n
	case proxyconfig.CompareLE:
		return v <= n
	}
	return v == n
}
