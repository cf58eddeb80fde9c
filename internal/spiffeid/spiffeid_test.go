package spiffeid

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ID
		wantErr string
	}{
		{name: "workload", in: "spiffe://cluster.local/ns/default/sa/reviews", want: ID{"cluster.local", "default", "reviews"}},
		{name: "odd but allowed characters", in: "spiffe://example_td-1.org/ns/a.b-c_d/sa/A9", want: ID{"example_td-1.org", "a.b-c_d", "A9"}},
		{name: "other scheme", in: "https://cluster.local/ns/default/sa/x", wantErr: "must start with"},
		{name: "uppercase scheme", in: "SPIFFE://cluster.local/ns/default/sa/x", wantErr: "must start with"},
		{name: "uppercase trust domain", in: "spiffe://Cluster.local/ns/default/sa/x", wantErr: "not allowed"},
		{name: "no path", in: "spiffe://cluster.local", wantErr: "no path"},
		{name: "empty trust domain", in: "spiffe:///ns/default/sa/x", wantErr: "empty trust domain"},
		{name: "port", in: "spiffe://cluster.local:8080/ns/default/sa/x", wantErr: "not allowed"},
		{name: "user info", in: "spiffe://me@cluster.local/ns/default/sa/x", wantErr: "not allowed"},
		{name: "query", in: "spiffe://cluster.local/ns/default/sa/x?a=b", wantErr: "not allowed"},
		{name: "fragment", in: "spiffe://cluster.local/ns/default/sa/x#f", wantErr: "not allowed"},
		{name: "percent encoding", in: "spiffe://cluster.local/ns/default/sa/x%20y", wantErr: "not allowed"},
		{name: "trailing slash", in: "spiffe://cluster.local/ns/default/sa/x/", wantErr: "path must be"},
		{name: "other path", in: "spiffe://cluster.local/workload/x", wantErr: "path must be"},
		{name: "swapped keys", in: "spiffe://cluster.local/sa/x/ns/default", wantErr: "path must be"},
		{name: "empty namespace", in: "spiffe://cluster.local/ns//sa/x", wantErr: "empty namespace"},
		{name: "dot segment", in: "spiffe://cluster.local/ns/../sa/x", wantErr: "dot segments"},
		{name: "too long", in: "spiffe://cluster.local/ns/default/sa/" + strings.Repeat("a", MaxLength), wantErr: "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
			if got.URL().String() != tc.in {
				t.Errorf("URL() = %q, want %q", got.URL(), tc.in)
			}
		})
	}
}

func TestFromURIs(t *testing.T) {
	a, _ := url.Parse("spiffe://cluster.local/ns/default/sa/a")
	b, _ := url.Parse("spiffe://cluster.local/ns/default/sa/b")
	if _, err := FromURIs(nil); err == nil {
		t.Error("no URI SAN accepted")
	}
	if _, err := FromURIs([]*url.URL{a, b}); err == nil || !strings.Contains(err.Error(), "2 URI SANs") {
		t.Errorf("two URI SANs: %v", err)
	}
	id, err := FromURIs([]*url.URL{a})
	if err != nil || id.Principal() != "cluster.local/ns/default/sa/a" {
		t.Errorf("FromURIs = %v, %v", id, err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New("cluster.local", "default", "a/b"); err == nil {
		t.Error("slash in service account accepted")
	}
	if _, err := New("", "default", "x"); err == nil {
		t.Error("empty trust domain accepted")
	}
	id, err := New(DefaultTrustDomain, "default", "x")
	if err != nil || id.String() != "spiffe://cluster.local/ns/default/sa/x" {
		t.Errorf("New = %v, %v", id, err)
	}
}

// FuzzParse checks that Parse never panics, that an accepted ID is
// canonical (String gives back the input) and that net/url reads it the
// same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"spiffe://cluster.local/ns/default/sa/reviews",
		"spiffe://td/ns/a/sa/b",
		"spiffe://cluster.local/ns/../sa/x",
		"spiffe://cluster.local:1/ns/a/sa/b",
		"spiffe://a/ns/b/sa/c?d#e",
		"spiffe://%41/ns/a/sa/b",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, id.String())
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("Parse(%q) accepted an invalid ID: %v", s, err)
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("Parse accepted %q, url.Parse did not: %v", s, err)
		}
		back, err := FromURIs([]*url.URL{u})
		if err != nil || back != id {
			t.Fatalf("FromURIs(url.Parse(%q)) = %v, %v; want %v", s, back, err, id)
		}
	})
}
