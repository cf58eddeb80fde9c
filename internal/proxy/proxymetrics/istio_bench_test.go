package proxymetrics

import (
	"strconv"
	"testing"
	"time"

	"weft.dev/weft/internal/proxy/peermeta"
)

// BenchmarkRecordHTTP is the recording path of a request whose label set
// was seen before, from every P at once.
func BenchmarkRecordHTTP(b *testing.B) {
	m := New()
	m.SetWorkload(productpage)
	hdr := peermeta.Encode(reviews)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := HTTPRequest{Peer: peermeta.Parse(hdr), Service: "reviews.default.svc.cluster.local", Code: 200,
				Duration: 1500 * time.Microsecond, RequestBytes: 100, ResponseBytes: 1024}
			m.RecordHTTP(&r)
		}
	})
}

// BenchmarkRecordHTTPManyLabelSets spreads requests over 64 label sets
// (codes and services).
func BenchmarkRecordHTTPManyLabelSets(b *testing.B) {
	m := New()
	m.SetWorkload(productpage)
	var rs []HTTPRequest
	for i := range 64 {
		rs = append(rs, HTTPRequest{Peer: reviews, Service: "svc" + strconv.Itoa(i%8) + ".default.svc.cluster.local", Code: 200 + i/8, Duration: time.Millisecond})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.RecordHTTP(&rs[i&63])
			i++
		}
	})
}

// BenchmarkRecordTCP is a TCP connection's open and close.
func BenchmarkRecordTCP(b *testing.B) {
	m := New()
	m.SetWorkload(productpage)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := TCPConn{Service: "mongo.default.svc.cluster.local"}
		for pb.Next() {
			m.TCPOpened(&c)
			m.TCPClosed(&c, 4096, 512)
		}
	})
}
