package upstream

import (
	"testing"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

func BenchmarkLBPick(b *testing.B) {
	for _, lb := range []proxyconfig.LBPolicy{proxyconfig.LBRoundRobin, proxyconfig.LBLeastRequest, proxyconfig.LBRandom, proxyconfig.LBRingHash, proxyconfig.LBMaglev} {
		for _, weighted := range []bool{false, true} {
			name := lb.String()
			ws := []uint32{1, 1, 1, 1, 1, 1, 1, 1}
			if weighted {
				name += "/weighted"
				ws = []uint32{1, 2, 3, 4, 5, 6, 7, 8}
			}
			b.Run(name, func(b *testing.B) {
				c := NewManager().Update(map[string]*proxyconfig.Cluster{"c": cluster(lb)}, map[string]*proxyconfig.Endpoints{"c": endpoints(ws...)})["c"]
				b.ReportAllocs()
				var h uint64
				for b.Loop() {
					h += 0x9e3779b97f4a7c15
					if _, err := c.Pick("", h, true); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkLBPickPriorities is a pick with outlier detection: one
// priority level, all in service (the loads take no part), and two
// levels with half of priority 0 ejected (70 % of the picks stay there,
// a third of those replacing the ejected host).
func BenchmarkLBPickPriorities(b *testing.B) {
	for _, tc := range []struct {
		name   string
		sizes  []int
		eject  []string
		hashed bool
	}{
		{"one level", []int{8}, nil, false},
		{"failover", []int{2, 2}, []string{"p0-0:80"}, false},
		{"failover/hashed", []int{2, 2}, []string{"p0-0:80"}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			lb := proxyconfig.LBRoundRobin
			if tc.hashed {
				lb = proxyconfig.LBMaglev
			}
			cfg := cluster(lb)
			od := twoInARow
			cfg.Outlier = &od
			c := NewManager().Update(map[string]*proxyconfig.Cluster{"c": cfg}, map[string]*proxyconfig.Endpoints{"c": priorityEndpoints(tc.sizes...)})["c"]
			for _, a := range tc.eject {
				ejectHost(c, a)
			}
			b.ReportAllocs()
			var h uint64
			for b.Loop() {
				h += 0x9e3779b97f4a7c15
				if _, err := c.Pick("", h, tc.hashed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
