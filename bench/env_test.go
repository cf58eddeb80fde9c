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
		{"nothing", false, "", nil, nil},
		{"profile", true, "", nil, []string{"GODEBUG=memprofilerate=0"}},
		{"GOMAXPROCS kept", false, "", []string{"GOMAXPROCS=1", "A=b"}, []string{"GOMAXPROCS=1", "A=b"}},
		{
			"every GODEBUG joined, the harness's first",
			true, "gctrace=1",
			[]string{"GODEBUG=madvdontneed=1", "A=b", "GODEBUG=memprofilerate=512"},
			[]string{"A=b", "GODEBUG=memprofilerate=0,gctrace=1,madvdontneed=1,memprofilerate=512"},
		},
		{"outer GODEBUG alone", false, "gctrace=1", nil, []string{"GODEBUG=gctrace=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GODEBUG", tc.outer)
			o := Options{Threads: 2, Profile: tc.profile}
			if got := o.sidecarEnv(tc.env); !slices.Equal(got, tc.want) {
				t.Errorf("sidecarEnv(%q) = %q, want %q", tc.env, got, tc.want)
			}
		})
	}
}
