package upstream

import (
	"errors"
	"math/rand/v2"
	"net/http"
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
)

// ResultOf classifies an attempt: its response, or the error it ended
// with (a request the client cancelled says nothing about the host: OK).
func ResultOf(resp *http.Response, err error, cancelled bool) Result {
	switch {
	case err != nil && cancelled && !errors.Is(err, ErrOverflow):
		return ResultOK
	case err != nil:
		return ResultGateway
	case resp.StatusCode == 502 || resp.StatusCode == 503 || resp.StatusCode == 504:
		return ResultGateway
	case resp.StatusCode >= 500:
		return Result5xx
	}
	return ResultOK
}

// outlierState is a host's outlier detection state. It persists across
// endpoint updates, as the host does.
type outlierState struct {
	consec5xx, consecGateway atomic.Uint32
	// ejectedUntil is when the current ejection ends (UnixNano); 0 or
	// past when the host is in service.
	ejectedUntil atomic.Int64
	// ejections counts the host's ejections in a row (see eject);
	// lastEnd is when the last one ended.
	ejections atomic.Uint32
	lastEnd   atomic.Int64
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
	if r == ResultOK {
		o.consec5xx.Store(0)
		o.consecGateway.Store(0)
		return
	}
	n5 := o.consec5xx.Add(1)
	var ng uint32
	if r == ResultGateway {
		ng = o.consecGateway.Add(1)
	} else {
		o.consecGateway.Store(0)
	}
	switch {
	case od.Consecutive5xx > 0 && n5 >= od.Consecutive5xx && enforced(od.Enforcing5xx):
		c.eject(h, od)
	case od.ConsecutiveGateway > 0 && ng >= od.ConsecutiveGateway && enforced(od.EnforcingGateway):
		c.eject(h, od)
	}
}

func enforced(percent uint32) bool {
	return percent >= 100 || percent > 0 && rand.Uint32N(100) < percent
}

// eject takes h out of load balancing, unless it is out already or the
// cluster has max_ejection_percent of its hosts out (one host may always
// be). The n-th ejection in a row lasts n base ejection times, at most
// the maximum; the count drops by one for each interval the host stayed
// in service since its last ejection ended.
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
	pool := c.st.Load().pool
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
	if end := o.lastEnd.Load(); end > 0 && n > 0 {
		healthy := uint32(max(0, now-end) / int64(od.Interval))
		n -= min(n, healthy)
	}
	n++
	o.ejections.Store(n)
	d := min(time.Duration(n)*od.BaseEjection, od.MaxEjection)
	o.ejectedUntil.Store(now + int64(d))
	o.lastEnd.Store(now + int64(d))
	c.Ejections.Add(1)
}

// inService filters a pick through outlier detection: an ejected host is
// replaced by another pick (a few tries, then the first host in service),
// unless fewer than the panic threshold of the hosts are in service, when
// ejections are ignored.
func (c *Cluster) inService(st *state, h *Host, pick func() *Host) *Host {
	od := st.cfg.Outlier
	if od == nil || h == nil {
		return h
	}
	now := time.Now().UnixNano()
	if !h.ejectedAt(now) {
		return h
	}
	in := 0
	var first *Host
	for _, p := range st.pool {
		if !p.ejectedAt(now) {
			in++
			if first == nil {
				first = p
			}
		}
	}
	if float64(in)*100 < od.PanicPercent*float64(len(st.pool)) {
		return h // panic: every host, ejected or not
	}
	if in == 0 {
		return nil
	}
	for range 3 {
		if p := pick(); p != nil && !p.ejectedAt(now) {
			return p
		}
	}
	return first
}
