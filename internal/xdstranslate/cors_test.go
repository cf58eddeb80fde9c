package xdstranslate

import (
	"testing"
	"time"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

func TestCORSPolicy(t *testing.T) {
	exactOrigin := func(s string) *matcher.StringMatcher {
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}}
	}
	for _, tc := range []struct {
		name string
		in   *networking.CorsPolicy
		want *corsv3.CorsPolicy
	}{
		{"every field", &networking.CorsPolicy{
			AllowOrigins: []*networking.StringMatch{exact("https://a.example")}, AllowOrigin: []string{"https://ignored.example"},
			AllowMethods: []string{"GET", "POST"}, AllowHeaders: []string{"X-A", "X-B"}, ExposeHeaders: []string{"X-C"},
			MaxAge: durationpb.New(time.Hour), AllowCredentials: wrapperspb.Bool(true), UnmatchedPreflights: networking.CorsPolicy_IGNORE,
		}, &corsv3.CorsPolicy{
			AllowOriginStringMatch: []*matcher.StringMatcher{exactOrigin("https://a.example")},
			AllowMethods:           "GET,POST", AllowHeaders: "X-A,X-B", ExposeHeaders: "X-C", MaxAge: "3600",
			AllowCredentials: wrapperspb.Bool(true), ForwardNotMatchingPreflights: wrapperspb.Bool(false),
		}},
		{"the deprecated origins alone", &networking.CorsPolicy{AllowOrigin: []string{"*"}},
			&corsv3.CorsPolicy{AllowOriginStringMatch: []*matcher.StringMatcher{exactOrigin("*")}}},
		{"a negative maxAge is left out", &networking.CorsPolicy{MaxAge: durationpb.New(-time.Second)}, &corsv3.CorsPolicy{}},
	} {
		if got := corsPolicy(tc.in); !proto.Equal(got, tc.want) {
			t.Errorf("%s: corsPolicy = %v, want %v", tc.name, got, tc.want)
		}
	}
	if corsPolicy(nil) != nil {
		t.Error("corsPolicy(nil) is not nil")
	}
}
