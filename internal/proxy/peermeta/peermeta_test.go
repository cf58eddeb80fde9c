package peermeta

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeParse(t *testing.T) {
	tests := []struct {
		name string
		w    Workload
		want string
	}{
		{name: "full", w: Workload{Name: "reviews-v2", Namespace: "default", App: "reviews", Version: "v2", ServiceAccount: "bookinfo-reviews"},
			want: "w=reviews-v2;n=default;a=reviews;v=v2;s=bookinfo-reviews"},
		{name: "empty fields left out", w: Workload{Name: "x", Namespace: "ns"}, want: "w=x;n=ns"},
		{name: "unknown peer", w: Workload{}, want: ""},
		{name: "escaped", w: Workload{Name: "a;b=c", App: "caf\u00e9 %"}, want: "w=a%3Bb%3Dc;a=caf%C3%A9%20%25"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Encode(tc.w)
			if got != tc.want {
				t.Errorf("Encode = %q, want %q", got, tc.want)
			}
			if diff := cmp.Diff(tc.w, Parse(got)); diff != "" {
				t.Errorf("Parse(Encode) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     Workload
	}{
		{name: "any order, unknown keys, spaces", in: " v=v1 ; x=later;w=ratings ;n=prod", want: Workload{Name: "ratings", Namespace: "prod", Version: "v1"}},
		{name: "malformed pairs skipped", in: "w;=x;nn=y;a=ok;v=%zz", want: Workload{App: "ok"}},
		{name: "too long", in: "w=" + string(make([]byte, MaxLen)), want: Workload{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Parse(tc.in)); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestFromLabels(t *testing.T) {
	got := FromLabels("w", "ns", "sa", map[string]string{"app.kubernetes.io/name": "shop", "app.kubernetes.io/version": "2", "version": "v2"})
	want := Workload{Name: "w", Namespace: "ns", App: "shop", Version: "v2", ServiceAccount: "sa"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromLabels (-want +got):\n%s", diff)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	v := Encode(Workload{Name: "reviews-v2", Namespace: "default", App: "reviews", Version: "v2", ServiceAccount: "sa"})
	if n := testing.AllocsPerRun(100, func() { _ = Parse(v) }); n != 0 {
		t.Errorf("Parse allocates %v times, want 0", n)
	}
}

// FuzzParse checks that Parse never panics on what a peer sends, and
// that whatever it returns survives an Encode round trip (within MaxLen).
func FuzzParse(f *testing.F) {
	f.Add("w=reviews-v2;n=default;a=reviews;v=v2;s=sa")
	f.Add("w=a%3Bb;;=;%")
	f.Fuzz(func(t *testing.T, s string) {
		w := Parse(s)
		if len(Encode(w)) > MaxLen {
			return // escaping grew it past what Parse accepts
		}
		if diff := cmp.Diff(w, Parse(Encode(w))); diff != "" {
			t.Errorf("round trip of Parse(%q) (-first +second):\n%s", s, diff)
		}
	})
}
