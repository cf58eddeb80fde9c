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
