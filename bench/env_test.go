package bench

import (
	"slices"
	"testing"
)

func TestSidecarEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile bool
		outer   string // weftbench's own GODEBUG
		env     []string
		want    []string
	}{
		{"nothing", false, "", nil, []string{"GOMAXPROCS="}},
		{"profile", true, "", nil, []string{"GOMAXPROCS=", "GODEBUG=memprofilerate=0"}},
		{"GOMAXPROCS kept after the inherited one's clearing", false, "", []string{"GOMAXPROCS=1", "A=b"}, []string{"GOMAXPROCS=", "GOMAXPROCS=1", "A=b"}},
		{
			"every GODEBUG joined, the harness's first",
			true, "gctrace=1",
			[]string{"GODEBUG=madvdontneed=1", "A=b", "GODEBUG=memprofilerate=512"},
			[]string{"GOMAXPROCS=", "A=b", "GODEBUG=memprofilerate=0,gctrace=1,madvdontneed=1,memprofilerate=512"},
		},
		{"outer GODEBUG alone", false, "gctrace=1", nil, []string{"GOMAXPROCS=", "GODEBUG=gctrace=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GODEBUG", tc.outer)
			o := Options{Threads: 2, Profile: tc.profile}
			if got := o.sidecarEnv(tc.env, false); !slices.Equal(got, tc.want) {
				t.Errorf("sidecarEnv(%q) = %q, want %q", tc.env, got, tc.want)
			}
			want := append([]string{"GOMAXPROCS=2"}, tc.want[1:]...)
			if got := o.sidecarEnv(tc.env, true); !slices.Equal(got, want) {
				t.Errorf("sidecarEnv(%q) for a binary without --concurrency = %q, want %q", tc.env, got, want)
			}
		})
	}
}
