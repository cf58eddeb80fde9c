package peermeta

import (
	"strings"
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
		{name: "names and label values", w: Workload{Name: "shop_api.v1-0", Version: "1.2.3-rc_1"}, want: "w=shop_api.v1-0;v=1.2.3-rc_1"},
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
		{name: "bytes outside the name charset dropped", in: "w=a%3Bb;n=caf\u00e9;a=x y;v=v1/2;s=ok", want: Workload{ServiceAccount: "ok"}},
		{name: "label value over 63 bytes dropped", in: "a=" + strings.Repeat("a", MaxValueLen+1) + ";v=" + strings.Repeat("v", MaxValueLen),
			want: Workload{Version: strings.Repeat("v", MaxValueLen)}},
		{name: "workload name up to 253 bytes", in: "w=" + strings.Repeat("w", MaxNameLen) + ";s=" + strings.Repeat("s", MaxNameLen+1),
			want: Workload{Name: strings.Repeat("w", MaxNameLen)}},
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

func TestEncodeLeavesOutInvalidValues(t *testing.T) {
	w := Workload{Name: "reviews-v2", Namespace: "default", App: "caf\u00e9", Version: strings.Repeat("v", MaxValueLen+1)}
	if got, want := Encode(w), "w=reviews-v2;n=default"; got != want {
		t.Errorf("Encode = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"app", "version"}, Invalid(w)); diff != "" {
		t.Errorf("Invalid (-want +got):\n%s", diff)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	v := Encode(Workload{Name: "reviews-v2", Namespace: "default", App: "reviews", Version: "v2", ServiceAccount: "sa"})
	if n := testing.AllocsPerRun(100, func() { _ = Parse(v) }); n != 0 {
		t.Errorf("Parse allocates %v times, want 0", n)
	}
}

// FuzzParse checks that Parse never panics on what a peer sends, and
// that whatever it returns is valid and survives an Encode round trip
// (within MaxLen).
func FuzzParse(f *testing.F) {
	f.Add("w=reviews-v2;n=default;a=reviews;v=v2;s=sa")
	f.Add("w=a%3Bb;;=;%")
	f.Fuzz(func(t *testing.T, s string) {
		w := Parse(s)
		if bad := Invalid(w); len(bad) > 0 {
			t.Errorf("Parse(%q) returned invalid fields %v: %+v", s, bad, w)
		}
		if len(Encode(w)) > MaxLen {
			return // escaping grew it past what Parse accepts
		}
		if diff := cmp.Diff(w, Parse(Encode(w))); diff != "" {
			t.Errorf("round trip of Parse(%q) (-first +second):\n%s", s, diff)
		}
	})
}
