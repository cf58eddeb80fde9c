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

// BenchmarkRecordHTTPOverflow is the recording path under a flood of
// spoofed peer headers, each naming a new workload, once the HTTP family
// is at its cap: every request goes to the label set without a peer.
func BenchmarkRecordHTTPOverflow(b *testing.B) {
	m := New()
	m.SetWorkload(productpage)
	m.SetMaxSeries(64)
	hdrs := make([]string, 4096)
	for i := range hdrs {
		hdrs[i] = peermeta.Encode(peermeta.Workload{Name: "spoofed-" + strconv.Itoa(i), Namespace: "default"})
	}
	for i := range 128 { // fill the family, then overflow once
		m.RecordHTTP(&HTTPRequest{Peer: peermeta.Parse(hdrs[i]), Service: "reviews.default.svc.cluster.local", Code: 200})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r := HTTPRequest{Peer: peermeta.Parse(hdrs[i&4095]), Service: "reviews.default.svc.cluster.local", Code: 200,
				Duration: 1500 * time.Microsecond, RequestBytes: 100, ResponseBytes: 1024}
			m.RecordHTTP(&r)
			i++
		}
	})
}

// BenchmarkRecordTCP is a TCP connection's open, one chunk each way and
// close.
func BenchmarkRecordTCP(b *testing.B) {
	m := New()
	m.SetWorkload(productpage)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := TCPConn{Service: "mongo.default.svc.cluster.local"}
		for pb.Next() {
			bytes := m.TCPOpened(&c)
			bytes.Sent(4096)
			bytes.Received(512)
			m.TCPClosed(&c)
		}
	})
}

// BenchmarkTCPBytesChunk is what the copy loops add per chunk they copy,
// from every P at once on one label set (the worst case for contention).
func BenchmarkTCPBytesChunk(b *testing.B) {
	m := New()
	m.SetWorkload(productpage)
	c := TCPConn{Service: "mongo.default.svc.cluster.local"}
	bytes := m.TCPOpened(&c)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bytes.Sent(32 << 10)
		}
	})
}
