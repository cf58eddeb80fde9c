package upstream

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"weft.dev/weft/internal/proxy/proxyconfig"
)

// Result is how one request to a host ended, as outlier detection sees
// it.
type Result uint8

const (
	// ResultOK is any answer below 500.
	ResultOK Result = iota
	// Result5xx is a 5xx answer other than a gateway error.
	Result5xx
	// ResultGateway is a 502, 503 or 504 answer, or a failure of the
	// proxy's own (connect, reset, timeout), which Envoy counts as both a
	// 5xx and a gateway error.
	ResultGateway
	// ResultNone says nothing about the host: the client went away, the
	// cluster's own circuit breaker refused the request, or it ended
	// while waiting for a free connection.
	ResultNone
)

// ResultOf classifies an attempt: its response, or the error it ended
// with. A gRPC answer's status is its grpc-status header (a
// trailers-only answer), mapped to the HTTP status gRPC gives it; a
// grpc-status in trailers is not seen, as in Envoy.
func ResultOf(resp *http.Response, err error, cancelled bool) Result {
	if err != nil {
		if cancelled || errors.Is(err, ErrOverflow) || errors.Is(err, ErrPending) {
			return ResultNone
		}
		return ResultGateway
	}
	status := resp.StatusCode
	if v := resp.Header["Grpc-Status"]; len(v) > 0 {
		if code, err := strconv.Atoi(v[0]); err == nil {
			status = httpStatusOfGRPC(code)
		}
	}
	switch {
	case status == 502 || status == 503 || status == 504:
		return ResultGateway
	case status >= 500:
		return Result5xx
	}
	return ResultOK
}

// httpStatusOfGRPC is the HTTP status a gRPC status code stands for (the
// mapping google.rpc.Code documents).
func httpStatusOfGRPC(code int) int {
	switch code {
	case 0:
		return 200
	case 1:
		return 499
	case 3, 9, 11:
		return 400
	case 4:
		return 504
	case 5:
		return 404
	case 6, 10:
		return 409
	case 7:
		return 403
	case 8:
		return 429
	case 12:
		return 501
	case 14:
		return 503
	case 16:
		return 401
	}
	return 500
}

// outlierState is a host's outlier detection state. It persists across
// endpoint updates, as the host does.
type outlierState struct {
	consec5xx, consecGateway atomic.Uint32
	// ejectedUntil is when the host's last ejection ends or ended
	// (UnixNano); 0 when it was never ejected.
	ejectedUntil atomic.Int64
	// ejections counts the host's ejections in a row (see eject).
	ejections atomic.Uint32
}

// Ejected reports whether outlier detection has taken the host out of
// load balancing now.
func (h *Host) Ejected() bool { return h.ejectedAt(time.Now().UnixNano()) }

func (h *Host) ejectedAt(now int64) bool { return h.outlier.ejectedUntil.Load() > now }

// Observe records how a request to h ended for the cluster's outlier
// detection, and ejects h when a detector trips. It does nothing when the
// cluster has none.
func (c *Cluster) Observe(h *Host, r Result) {
	od := c.st.Load().cfg.Outlier
	if od == nil {
		return
	}
	o := &h.outlier
	switch r {
	case ResultNone:
		return
	case ResultOK:
		// Loaded first: a run of successes does not write shared memory.
		if o.consec5xx.Load() != 0 {
			o.consec5xx.Store(0)
		}
		if o.consecGateway.Load() != 0 {
			o.consecGateway.Store(0)
		}
		return
	}
	n5 := o.consec5xx.Add(1)
	var ng uint32
	if r == ResultGateway {
		ng = o.consecGateway.Add(1)
	} else {
		o.consecGateway.Store(0)
	}
	// A detector that trips starts its count again whether or not the
	// ejection is enforced, so an enforcing percentage applies once per
	// run, as in Envoy.
	if od.Consecutive5xx > 0 && n5 >= od.Consecutive5xx {
		o.consec5xx.Store(0)
		if enforced(od.Enforcing5xx) {
			c.eject(h, od)
			return
		}
	}
	if od.ConsecutiveGateway > 0 && ng >= od.ConsecutiveGateway {
		o.consecGateway.Store(0)
		if enforced(od.EnforcingGateway) {
			c.eject(h, od)
		}
	}
}

func enforced(percent uint32) bool {
	return percent >= 100 || percent > 0 && rand.Uint32N(100) < percent
}

// eject takes h out of load balancing, unless it is out already or the
// cluster has max_ejection_percent of its hosts out (one host may always
// be; the hosts of all priority levels count, as in Envoy). The n-th
// ejection in a row lasts n base ejection times, at most the maximum;
// the count drops by one for each interval the host stayed in service
// since its last ejection ended. The priority levels' loads are
// recomputed, as they are when the first ejection they count ends
// (Cluster.refreshLoads).
func (c *Cluster) eject(h *Host, od *proxyconfig.Outlier) {
	c.outlierMu.Lock()
	defer c.outlierMu.Unlock()
	now := time.Now().UnixNano()
	o := &h.outlier
	o.consec5xx.Store(0)
	o.consecGateway.Store(0)
	if h.ejectedAt(now) {
		return
	}
	st := c.st.Load()
	pool := st.pool
	out := 0
	for _, p := range pool {
		if p.ejectedAt(now) {
			out++
		}
	}
	if out > 0 && (out+1)*100 > len(pool)*int(od.MaxEjectionPercent) {
		return
	}
	n := o.ejections.Load()
	if end := o.ejectedUntil.Load(); end > 0 && n > 0 {
		healthy := uint32(max(0, now-end) / int64(od.Interval))
		n -= min(n, healthy)
	}
	// The count stops growing once the ejection reaches the maximum.
	n = min(n+1, uint32((od.MaxEjection+od.BaseEjection-1)/od.BaseEjection))
	o.ejections.Store(n)
	d := min(time.Duration(n)*od.BaseEjection, od.MaxEjection)
	o.ejectedUntil.Store(now + int64(d))
	c.Ejections.Add(1)
	if st.lv != nil {
		st.lv.loads.Store(st.computeLoads(now))
	}
}

// inService filters a pick of pk through outlier detection. An ejected
// host is replaced by pk's pick for a derived hash (the same key always
// derives the same ones, so a consistent-hash key moves to one host), a
// few tries, then by a host of pool (the hosts pk chooses from) in
// service, chosen by the hash, or at random without one; nil when none
// is. Panic, where ejections are ignored, is the priority level's, decided
// by its loads (see lbLoads).
func inService(pk picker, pool []*Host, h *Host, hash uint64, hasHash bool, now int64) *Host {
	if h == nil || !h.ejectedAt(now) {
		return h
	}
	if !hasHash {
		hash = rand.Uint64()
	}
	for i := range uint64(3) {
		if p := pk.pick(mix(hash, i+1), hasHash); p != nil && !p.ejectedAt(now) {
			return p
		}
	}
	in := 0
	for _, p := range pool {
		if !p.ejectedAt(now) {
			in++
		}
	}
	if in == 0 {
		return nil
	}
	k := hash % uint64(in)
	for _, p := range pool {
		if !p.ejectedAt(now) {
			if k == 0 {
				return p
			}
			k--
		}
	}
	return nil // not reached
}

// mix derives the i-th alternative of a hash (splitmix64's finaliser).
func mix(hash, i uint64) uint64 {
	z := hash + i*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
