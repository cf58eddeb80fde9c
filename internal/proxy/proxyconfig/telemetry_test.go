package proxyconfig

import (
	"strings"
	"testing"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tracingtype "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestParseTelemetry(t *testing.T) {
	t.Setenv("WEFT_TEST_ZONE", "z1")
	otel := func(cluster string) *tracev3.Tracing_Http {
		return &tracev3.Tracing_Http{Name: OpenTelemetryTracer, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: anyOf(t, &tracev3.OpenTelemetryConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: cluster}}},
			ServiceName: "reviews-v3",
		})}}
	}
	tests := []struct {
		name       string
		h          *hcmv3.HttpConnectionManager
		want       *HTTPConnectionManager
		err        string
		unenforced string
	}{
		{name: "tracing and stdout log", h: &hcmv3.HttpConnectionManager{
			Tracing: &hcmv3.HttpConnectionManager_Tracing{
				RandomSampling: &typev3.Percent{Value: 5},
				Provider:       otel("weft-otlp"),
				CustomTags: []*tracingtype.CustomTag{
					{Tag: "team", Type: &tracingtype.CustomTag_Literal_{Literal: &tracingtype.CustomTag_Literal{Value: "shop"}}},
					{Tag: "zone", Type: &tracingtype.CustomTag_Environment_{Environment: &tracingtype.CustomTag_Environment{Name: "WEFT_TEST_ZONE"}}},
					{Tag: "region", Type: &tracingtype.CustomTag_Environment_{Environment: &tracingtype.CustomTag_Environment{Name: "WEFT_TEST_UNSET", DefaultValue: "r0"}}},
					{Tag: "user", Type: &tracingtype.CustomTag_RequestHeader{RequestHeader: &tracingtype.CustomTag_Header{Name: "end-user", DefaultValue: "anon"}}},
				},
			},
			AccessLog: []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.stdout", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, &streamv3.StdoutAccessLog{})}}},
		}, want: &HTTPConnectionManager{
			Tracing: &Tracing{Sampling: 5, Cluster: "weft-otlp", ServiceName: "reviews-v3", Tags: []CustomTag{
				{Name: "team", Value: "shop"}, {Name: "zone", Value: "z1"}, {Name: "region", Value: "r0"}, {Name: "user", Header: "end-user", Value: "anon"},
			}},
			AccessLogs: []AccessLog{{Path: AccessLogStdout}},
		}},
		{name: "sampling defaults to 100 and file log", h: &hcmv3.HttpConnectionManager{
			Tracing:   &hcmv3.HttpConnectionManager_Tracing{Provider: otel("c")},
			AccessLog: []*accesslogv3.AccessLog{{Name: "f", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, &filev3.FileAccessLog{Path: "/tmp/a.log"})}}},
		}, want: &HTTPConnectionManager{Tracing: &Tracing{Sampling: 100, Cluster: "c", ServiceName: "reviews-v3"}, AccessLogs: []AccessLog{{Path: "/tmp/a.log"}}}},
		{name: "other tracer noted", h: &hcmv3.HttpConnectionManager{
			Tracing: &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{Name: "envoy.tracers.zipkin", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: anyOf(t, &tracev3.ZipkinConfig{})}}},
		}, want: &HTTPConnectionManager{}, unenforced: `tracing provider "envoy.tracers.zipkin"`},
		{name: "no cluster", h: &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{Provider: otel("")}},
			err: "needs grpc_service.envoy_grpc.cluster_name"},
		{name: "sampling out of range", h: &hcmv3.HttpConnectionManager{Tracing: &hcmv3.HttpConnectionManager_Tracing{Provider: otel("c"), RandomSampling: &typev3.Percent{Value: 101}}},
			err: "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var notes []string
			h := tc.h
			h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "80"}}
			got, err := parseHCM(h, &notes)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.RDSName = "80"
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if tc.unenforced != "" && !strings.Contains(strings.Join(notes, "\n"), tc.unenforced) {
				t.Errorf("unenforced notes %q lack %q", notes, tc.unenforced)
			}
		})
	}
}

func TestParseTCPProxyAccessLog(t *testing.T) {
	tests := []struct {
		name       string
		logs       []*accesslogv3.AccessLog
		opts       *tcpproxyv3.TcpProxy_TcpAccessLogOptions
		want       []AccessLog
		err        string
		unenforced string
	}{
		{name: "none", want: nil},
		{name: "stdout", logs: []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.stdout", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, &streamv3.StdoutAccessLog{})}}},
			want: []AccessLog{{Path: AccessLogStdout}}},
		{name: "file, periodic flush noted", logs: []*accesslogv3.AccessLog{{Name: "f", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, &filev3.FileAccessLog{Path: "/tmp/tcp.log"})}}},
			opts: &tcpproxyv3.TcpProxy_TcpAccessLogOptions{FlushAccessLogOnConnected: true},
			want: []AccessLog{{Path: "/tmp/tcp.log"}}, unenforced: "access_log_options"},
		{name: "file without a path", logs: []*accesslogv3.AccessLog{{Name: "f", ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: anyOf(t, &filev3.FileAccessLog{})}}},
			err: `access_log[0] "f": path is empty`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var notes []string
			got, err := parseTCPProxy(&tcpproxyv3.TcpProxy{ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "c"}, AccessLog: tc.logs, AccessLogOptions: tc.opts}, &notes)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.AccessLogs); diff != "" {
				t.Errorf("access logs (-want +got):\n%s", diff)
			}
			if tc.unenforced != "" && !strings.Contains(strings.Join(notes, "\n"), tc.unenforced) {
				t.Errorf("unenforced notes %q lack %q", notes, tc.unenforced)
			}
		})
	}
}

// TestParseLogFilter: the filters Weft evaluates become LogFilters;
// malformed ones are errors; others are noted as not enforced and pass.
func TestParseLogFilter(t *testing.T) {
	status := func(op accesslogv3.ComparisonFilter_Op, v uint32) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{StatusCodeFilter: &accesslogv3.StatusCodeFilter{
			Comparison: &accesslogv3.ComparisonFilter{Op: op, Value: &corev3.RuntimeUInt32{DefaultValue: v, RuntimeKey: "k"}}}}}
	}
	or := func(fs ...*accesslogv3.AccessLogFilter) *accesslogv3.AccessLogFilter {
		return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_OrFilter{OrFilter: &accesslogv3.OrFilter{Filters: fs}}}
	}
	tests := []struct {
		name       string
		f          *accesslogv3.AccessLogFilter
		want       LogFilter
		err        string
		unenforced string
	}{
		{name: "or of statuses", f: or(status(accesslogv3.ComparisonFilter_LE, 199), status(accesslogv3.ComparisonFilter_GE, 400)),
			want: LogFilter{Kind: LogOr, Filters: []LogFilter{{Kind: LogStatus, Op: CompareLE, Value: 199}, {Kind: LogStatus, Op: CompareGE, Value: 400}}}},
		{name: "header", f: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_HeaderFilter{HeaderFilter: &accesslogv3.HeaderFilter{
			Header: &routev3.HeaderMatcher{Name: "X-Debug", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}},
			want: LogFilter{Kind: LogHeader, Header: HeaderMatcher{Name: "x-debug", Match: StringMatcher{Kind: MatchPresent}, Present: true}, HeaderKey: "X-Debug"}},
		{name: "grpc status", f: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_GrpcStatusFilter{GrpcStatusFilter: &accesslogv3.GrpcStatusFilter{
			Statuses: []accesslogv3.GrpcStatusFilter_Status{accesslogv3.GrpcStatusFilter_OK}, Exclude: true}}},
			want: LogFilter{Kind: LogGRPCStatus, GRPCStatuses: []int{0}, Exclude: true}},
		{name: "or of one", f: or(status(accesslogv3.ComparisonFilter_GE, 400)), err: "two filters or more"},
		{name: "empty", f: &accesslogv3.AccessLogFilter{}, err: "the filter is empty"},
		{name: "runtime filter noted", f: or(status(accesslogv3.ComparisonFilter_GE, 500), &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_RuntimeFilter{RuntimeFilter: &accesslogv3.RuntimeFilter{RuntimeKey: "r"}}}),
			want:       LogFilter{Kind: LogOr, Filters: []LogFilter{{Kind: LogStatus, Op: CompareGE, Value: 500}, {Kind: LogAnd}}},
			unenforced: "RuntimeFilter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var notes []string
			got, err := ParseLogFilter(tc.f, "log", &notes)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreUnexported(StringMatcher{})); diff != "" {
				t.Errorf("filter (-want +got):\n%s", diff)
			}
			if joined := strings.Join(notes, "\n"); tc.unenforced == "" && joined != "" || !strings.Contains(joined, tc.unenforced) {
				t.Errorf("unenforced notes %q, want %q", notes, tc.unenforced)
			}
		})
	}
}
