package proxyconfig

import (
	"errors"
	"fmt"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// faultTypeURL is the type of Envoy's HTTP fault filter config, as an
// HCM's http_filters entry and as a route's typed_per_filter_config.
const faultTypeURL = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"

// Fault is fault injection (Envoy's HTTP fault filter): a share of the
// requests is held back before it is forwarded, and a share is answered
// by the proxy itself with an error instead of being forwarded. A route's
// Fault replaces its listener's (HTTPConnectionManager.Fault) whole.
type Fault struct {
	// Delay holds DelayPerMillion requests in a million back this long.
	Delay           time.Duration
	DelayPerMillion uint32
	// AbortPerMillion requests in a million are answered with
	// AbortStatus (HTTP; a gRPC request gets the gRPC status gRPC maps it
	// to), or, when AbortGRPC is set, with gRPC status AbortGRPCStatus (a
	// trailers-only response; as in Envoy, any other request gets 200).
	AbortPerMillion uint32
	AbortStatus     int
	AbortGRPC       bool
	AbortGRPCStatus int
}

// perMillion converts a FractionalPercent to parts per million, at most
// a million. Unset is none, as in Envoy (and Istio, which leaves a fault
// without a percentage unset).
func perMillion(p *typev3.FractionalPercent) uint32 {
	if p == nil {
		return 0
	}
	n := uint64(p.GetNumerator())
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, 1_000_000))
}

// isFault reports whether a is an HTTP fault filter config.
func isFault(a *anypb.Any) bool { return a.GetTypeUrl() == faultTypeURL }

// Injects reports whether f delays or aborts any request.
func (f *Fault) Injects() bool {
	return f != nil && (f.DelayPerMillion > 0 || f.AbortPerMillion > 0)
}

// parseFault validates an HTTP fault filter config (one that injects
// nothing, as the empty one Istio puts in every HTTP connection manager,
// gives a Fault whose Injects is false). Parts it does not enforce are
// listed in unenforced, prefixed with where.
func parseFault(a *anypb.Any, where string, unenforced *[]string) (*Fault, error) {
	var f faultv3.HTTPFault
	if err := a.UnmarshalTo(&f); err != nil {
		return nil, fmt.Errorf("fault: %w", err)
	}
	out := &Fault{}
	if d := f.GetDelay(); d != nil {
		switch {
		case d.GetFixedDelay() != nil:
			delay := d.GetFixedDelay()
			if err := delay.CheckValid(); err != nil || delay.AsDuration() <= 0 {
				return nil, errors.New("fault: delay.fixed_delay must be more than 0")
			}
			out.Delay = delay.AsDuration()
			out.DelayPerMillion = perMillion(d.GetPercentage())
		case d.GetHeaderDelay() != nil:
			*unenforced = append(*unenforced, where+": fault delay.header_delay")
		default:
			return nil, errors.New("fault: delay needs fixed_delay")
		}
	}
	if ab := f.GetAbort(); ab != nil {
		switch e := ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus >= 600 {
				return nil, fmt.Errorf("fault: abort.http_status %d is not in [200, 600)", e.HttpStatus)
			}
			out.AbortStatus = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			out.AbortGRPC, out.AbortGRPCStatus = true, int(e.GrpcStatus)
		case *faultv3.FaultAbort_HeaderAbort_:
			*unenforced = append(*unenforced, where+": fault abort.header_abort")
		default:
			return nil, errors.New("fault: abort needs http_status or grpc_status")
		}
		if out.AbortStatus != 0 || out.AbortGRPC {
			out.AbortPerMillion = perMillion(ab.GetPercentage())
		}
	}
	// Conditions and limits Weft does not apply: a fault with any of them
	// would hit more requests than configured, so it is listed.
	if f.GetUpstreamCluster() != "" || len(f.GetHeaders()) > 0 || len(f.GetDownstreamNodes()) > 0 {
		*unenforced = append(*unenforced, where+": fault upstream_cluster, headers or downstream_nodes (the fault applies to every request of the route)")
	}
	if f.GetMaxActiveFaults() != nil || f.GetResponseRateLimit() != nil {
		*unenforced = append(*unenforced, where+": fault max_active_faults or response_rate_limit")
	}
	return out, nil
}
