package proxyconfig

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// Tracing is a validated HTTP connection manager tracing config: an
// OpenTelemetry tracer exporting over OTLP/gRPC to a cluster.
type Tracing struct {
	// Sampling is the percentage (0 to 100) of requests without a sampling
	// decision in their trace context that are traced (random_sampling;
	// Envoy's default, 100, when unset). An incoming decision is honoured.
	Sampling float64
	// Cluster is the collector's cluster (grpc_service.envoy_grpc).
	Cluster string
	// ServiceName names the proxy in its spans (service.name).
	ServiceName string
	// Tags are the custom tags, in config order.
	Tags []CustomTag
}

// CustomTag is one span attribute set by configuration.
type CustomTag struct {
	// Name is the attribute's name.
	Name string
	// Header, when set, is the request header whose value the tag takes
	// (Value when the request has none).
	Header string
	// Value is the literal, the environment variable's value read when
	// the config was parsed, or the default of a header tag.
	Value string
}

// AccessLog is one access log sink of an HTTP connection manager.
type AccessLog struct {
	// Path is where the JSON lines go: "/dev/stdout", "/dev/stderr" or a
	// file (appended to).
	Path string
	// Filter selects the requests logged; nil logs every one.
	Filter *LogFilter
}

// LogFilterKind is the test of a LogFilter.
type LogFilterKind int

// Envoy's access log filters that Weft evaluates.
const (
	// LogAnd passes when every one of Filters does.
	LogAnd LogFilterKind = iota
	// LogOr passes when one of Filters does.
	LogOr
	// LogStatus compares the response code (0 when none was sent).
	LogStatus
	// LogDuration compares the request's duration in milliseconds.
	LogDuration
	// LogHeader matches a request header.
	LogHeader
	// LogResponseFlags passes when the request has one of Flags, or any
	// response flag when Flags is empty.
	LogResponseFlags
	// LogGRPCStatus passes when the gRPC status is one of GRPCStatuses
	// (or is not, with Exclude).
	LogGRPCStatus
)

// Comparison operators of status and duration filters.
const (
	CompareEQ = iota
	CompareGE
	CompareLE
)

// LogFilter is a validated Envoy AccessLogFilter.
type LogFilter struct {
	Kind LogFilterKind
	// Filters are the operands of LogAnd and LogOr.
	Filters []LogFilter
	// Op (CompareEQ, CompareGE, CompareLE) and Value compare LogStatus
	// and LogDuration (milliseconds).
	Op    int
	Value int64
	// Header is LogHeader's matcher; HeaderKey its canonical header key
	// (or pseudo-header).
	Header    HeaderMatcher
	HeaderKey string
	// Flags are LogResponseFlags' flags ("UH", "UF", ...).
	Flags []string
	// GRPCStatuses and Exclude configure LogGRPCStatus.
	GRPCStatuses []int
	Exclude      bool
}

// Access log paths of the stream loggers.
const (
	AccessLogStdout = "/dev/stdout"
	AccessLogStderr = "/dev/stderr"
)

// Names of the tracer and access loggers Weft implements.
const (
	OpenTelemetryTracer = "envoy.tracers.opentelemetry"
	typeOpenTelemetry   = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
	typeStdoutLog       = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
	typeStderrLog       = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
	typeFileLog         = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
)

// parseTracing validates an HCM's tracing config. A tracer other than
// OpenTelemetry is accepted and noted as not enforced (nil result).
func parseTracing(t *hcmv3.HttpConnectionManager_Tracing, unenforced *[]string) (*Tracing, error) {
	if t == nil {
		return nil, nil
	}
	p := t.GetProvider()
	if p == nil {
		*unenforced = append(*unenforced, "tracing without a provider")
		return nil, nil
	}
	tc := p.GetTypedConfig()
	if tc.GetTypeUrl() != typeOpenTelemetry {
		*unenforced = append(*unenforced, fmt.Sprintf("tracing provider %q", p.GetName()))
		return nil, nil
	}
	otel := &tracev3.OpenTelemetryConfig{}
	if err := tc.UnmarshalTo(otel); err != nil {
		return nil, fmt.Errorf("tracing provider: %w", err)
	}
	out := &Tracing{Sampling: 100, ServiceName: otel.GetServiceName()}
	out.Cluster = otel.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if out.Cluster == "" {
		return nil, errors.New("tracing: the OpenTelemetry tracer needs grpc_service.envoy_grpc.cluster_name (OTLP/gRPC to a cluster)")
	}
	if otel.GetHttpService() != nil || otel.GetExporter() != nil {
		*unenforced = append(*unenforced, "tracing: OpenTelemetry http_service and exporter (Weft exports over gRPC)")
	}
	if rs := t.GetRandomSampling(); rs != nil {
		out.Sampling = rs.GetValue()
		if out.Sampling < 0 || out.Sampling > 100 {
			return nil, fmt.Errorf("tracing.random_sampling %v is out of range 0-100", out.Sampling)
		}
	}
	if t.GetClientSampling() != nil || t.GetOverallSampling() != nil {
		*unenforced = append(*unenforced, "tracing client_sampling and overall_sampling")
	}
	for i, ct := range t.GetCustomTags() {
		if ct.GetTag() == "" {
			return nil, fmt.Errorf("tracing.custom_tags[%d]: tag is empty", i)
		}
		tag := CustomTag{Name: ct.GetTag()}
		switch {
		case ct.GetLiteral() != nil:
			tag.Value = ct.GetLiteral().GetValue()
		case ct.GetEnvironment() != nil:
			v, ok := os.LookupEnv(ct.GetEnvironment().GetName())
			if !ok {
				v = ct.GetEnvironment().GetDefaultValue()
			}
			tag.Value = v
		case ct.GetRequestHeader() != nil:
			if ct.GetRequestHeader().GetName() == "" {
				return nil, fmt.Errorf("tracing.custom_tags[%d] %q: request_header.name is empty", i, ct.GetTag())
			}
			tag.Header, tag.Value = ct.GetRequestHeader().GetName(), ct.GetRequestHeader().GetDefaultValue()
		default:
			*unenforced = append(*unenforced, fmt.Sprintf("tracing custom tag %q (only literal, environment and request_header are supported)", ct.GetTag()))
			continue
		}
		out.Tags = append(out.Tags, tag)
	}
	return out, nil
}

// parseAccessLogs validates an HCM's access loggers: stdout, stderr and
// file loggers write the proxy's JSON lines (their log_format is noted as
// not enforced); other loggers are noted and ignored.
func parseAccessLogs(logs []*accesslogv3.AccessLog, unenforced *[]string) ([]AccessLog, error) {
	var out []AccessLog
	for i, l := range logs {
		var filter *LogFilter
		if l.GetFilter() != nil {
			f, err := ParseLogFilter(l.GetFilter(), l.GetName(), unenforced)
			if err != nil {
				return nil, fmt.Errorf("access_log[%d] %q filter: %w", i, l.GetName(), err)
			}
			filter = &f
		}
		tc := l.GetTypedConfig()
		switch tc.GetTypeUrl() {
		case typeStdoutLog:
			m := &streamv3.StdoutAccessLog{}
			if err := tc.UnmarshalTo(m); err != nil {
				return nil, fmt.Errorf("access_log[%d]: %w", i, err)
			}
			if m.GetLogFormat() != nil {
				*unenforced = append(*unenforced, fmt.Sprintf("access log %q log_format (Weft writes its JSON lines)", l.GetName()))
			}
			out = append(out, AccessLog{Path: AccessLogStdout, Filter: filter})
		case typeStderrLog:
			out = append(out, AccessLog{Path: AccessLogStderr, Filter: filter})
		case typeFileLog:
			m := &filev3.FileAccessLog{}
			if err := tc.UnmarshalTo(m); err != nil {
				return nil, fmt.Errorf("access_log[%d]: %w", i, err)
			}
			if m.GetPath() == "" {
				return nil, fmt.Errorf("access_log[%d] %q: path is empty", i, l.GetName())
			}
			if m.GetAccessLogFormat() != nil || m.GetFormat() != "" || m.GetJsonFormat() != nil || m.GetLogFormat() != nil {
				*unenforced = append(*unenforced, fmt.Sprintf("access log %q format (Weft writes its JSON lines)", l.GetName()))
			}
			out = append(out, AccessLog{Path: m.GetPath(), Filter: filter})
		default:
			*unenforced = append(*unenforced, fmt.Sprintf("access log %q (%s)", l.GetName(), tc.GetTypeUrl()))
		}
	}
	return out, nil
}

// ParseLogFilter validates an access log filter. Filters Weft does not
// evaluate (runtime, traceable, health check, metadata, log type,
// extensions) are noted as not enforced and pass every request.
func ParseLogFilter(f *accesslogv3.AccessLogFilter, logName string, unenforced *[]string) (LogFilter, error) {
	comparison := func(kind LogFilterKind, c *accesslogv3.ComparisonFilter) (LogFilter, error) {
		out := LogFilter{Kind: kind, Value: int64(c.GetValue().GetDefaultValue())}
		switch c.GetOp() {
		case accesslogv3.ComparisonFilter_EQ:
			out.Op = CompareEQ
		case accesslogv3.ComparisonFilter_GE:
			out.Op = CompareGE
		case accesslogv3.ComparisonFilter_LE:
			out.Op = CompareLE
		default:
			return out, fmt.Errorf("unknown comparison %v", c.GetOp())
		}
		if c.GetValue() == nil {
			return out, errors.New("comparison needs a value")
		}
		return out, nil
	}
	operands := func(kind LogFilterKind, fs []*accesslogv3.AccessLogFilter) (LogFilter, error) {
		if len(fs) < 2 {
			return LogFilter{}, errors.New("and_filter and or_filter need two filters or more")
		}
		out := LogFilter{Kind: kind, Filters: make([]LogFilter, len(fs))}
		for i, sub := range fs {
			var err error
			if out.Filters[i], err = ParseLogFilter(sub, logName, unenforced); err != nil {
				return out, fmt.Errorf("filters[%d]: %w", i, err)
			}
		}
		return out, nil
	}
	switch s := f.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		return comparison(LogStatus, s.StatusCodeFilter.GetComparison())
	case *accesslogv3.AccessLogFilter_DurationFilter:
		return comparison(LogDuration, s.DurationFilter.GetComparison())
	case *accesslogv3.AccessLogFilter_AndFilter:
		return operands(LogAnd, s.AndFilter.GetFilters())
	case *accesslogv3.AccessLogFilter_OrFilter:
		return operands(LogOr, s.OrFilter.GetFilters())
	case *accesslogv3.AccessLogFilter_HeaderFilter:
		m, err := parseHeaderMatcher(s.HeaderFilter.GetHeader())
		if err != nil {
			return LogFilter{}, fmt.Errorf("header_filter: %w", err)
		}
		key := m.Name
		if !strings.HasPrefix(key, ":") {
			key = http.CanonicalHeaderKey(key)
		}
		return LogFilter{Kind: LogHeader, Header: m, HeaderKey: key}, nil
	case *accesslogv3.AccessLogFilter_ResponseFlagFilter:
		return LogFilter{Kind: LogResponseFlags, Flags: s.ResponseFlagFilter.GetFlags()}, nil
	case *accesslogv3.AccessLogFilter_GrpcStatusFilter:
		out := LogFilter{Kind: LogGRPCStatus, Exclude: s.GrpcStatusFilter.GetExclude()}
		for _, st := range s.GrpcStatusFilter.GetStatuses() {
			out.GRPCStatuses = append(out.GRPCStatuses, int(st))
		}
		return out, nil
	case nil:
		return LogFilter{}, errors.New("the filter is empty")
	}
	*unenforced = append(*unenforced, fmt.Sprintf("access log %q filter %T", logName, f.GetFilterSpecifier()))
	return LogFilter{Kind: LogAnd}, nil // no operands: passes
}
