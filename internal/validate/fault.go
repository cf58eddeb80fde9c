package validate

import (
	"fmt"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"weft.dev/weft/internal/model"
)

// checkFault checks a route's fault injection (field f) as the sidecar
// applies it: a delay needs a fixedDelay of at least 1ms, an abort an
// HTTP status from 200 to 599 or a gRPC status (a name such as
// UNAVAILABLE, or its number), and percentages are from 0 to 100. A fault
// the sidecar would refuse must not reach it: it would refuse the whole
// route configuration of the port.
func checkFault(rep *reporter, f string, fi *networking.HTTPFaultInjection) {
	if fi == nil {
		return
	}
	if fi.GetDelay() == nil && fi.GetAbort() == nil {
		rep.errorf(f, "fault needs a delay or an abort")
	}
	if d := fi.GetDelay(); d != nil {
		checkPercentage(rep, f+".delay.percentage", d.GetPercentage())
		if p := d.GetPercent(); p < 0 || p > 100 {
			rep.errorf(f+".delay.percent", "percent %d is not from 0 to 100", p)
		}
		switch {
		case d.GetFixedDelay() != nil:
			if v := d.GetFixedDelay().AsDuration(); v < time.Millisecond {
				rep.errorf(f+".delay.fixedDelay", "fixedDelay %v is less than 1ms", v)
			}
		case d.GetExponentialDelay() != nil:
			rep.errorf(f+".delay.exponentialDelay", "exponentialDelay is not supported; use fixedDelay")
		default:
			rep.errorf(f+".delay", "delay needs fixedDelay (for example \"5s\")")
		}
	}
	if a := fi.GetAbort(); a != nil {
		checkPercentage(rep, f+".abort.percentage", a.GetPercentage())
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus > 599 {
				rep.errorf(f+".abort.httpStatus", "httpStatus %d is not an HTTP status from 200 to 599", e.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if _, ok := model.GRPCStatus(e.GrpcStatus); !ok {
				rep.errorf(f+".abort.grpcStatus", "grpcStatus %q is not a gRPC status; use a name such as UNAVAILABLE or a number from 0 to 16", e.GrpcStatus)
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			rep.errorf(f+".abort.http2Error", "http2Error is not supported; use httpStatus or grpcStatus")
		default:
			rep.errorf(f+".abort", "abort needs httpStatus or grpcStatus")
		}
	}
}

// checkPercentage checks a percentage of requests.
func checkPercentage(rep *reporter, f string, p *networking.Percent) {
	if v := p.GetValue(); p != nil && !(v >= 0 && v <= 100) { // NaN too
		rep.errorf(f, "percentage %v is not from 0 to 100", p.GetValue())
	}
}

// checkCORS checks a route's CORS policy (field f): each allowed origin
// is a match that is not empty, and a regex one compiles (RE2, as the
// sidecar's matcher).
func checkCORS(rep *reporter, f string, c *networking.CorsPolicy) {
	if c == nil {
		return
	}
	for i, o := range c.GetAllowOrigins() {
		of := fmt.Sprintf("%s.allowOrigins[%d]", f, i)
		switch m := o.GetMatchType().(type) {
		case *networking.StringMatch_Exact:
			if m.Exact == "" {
				rep.errorf(of, "exact is empty; give the origin, such as \"https://shop.example.com\"")
			}
		case *networking.StringMatch_Prefix:
			if m.Prefix == "" {
				rep.errorf(of, "prefix is empty; give the start of the origins to allow")
			}
		case *networking.StringMatch_Regex:
			if m.Regex == "" {
				rep.errorf(of, "regex is empty")
			} else {
				checkRegex(rep, of, m.Regex, true)
			}
		default:
			rep.errorf(of, "set exact, prefix or regex")
		}
	}
	if d := c.GetMaxAge(); d != nil && d.AsDuration() < 0 {
		rep.errorf(f+".maxAge", "maxAge %v is negative", d.AsDuration())
	}
}
