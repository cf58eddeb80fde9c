package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// load is one fortio load run.
type load struct {
	// URL is the HTTP target, or host:port for gRPC.
	URL  string
	GRPC bool
	QPS  float64 // 0: closed loop
	Conn int
	// Duration of the run, or N requests when N > 0.
	Duration time.Duration
	N        int
	Payload  int
}

// loadResult is what the harness keeps of fortio's JSON.
type loadResult struct {
	P50, P90, P99, P999 float64 // ms
	RPS                 float64
	Requests            int
	Errors              int
	Seconds             float64
}

// fortioJSON is the part of `fortio load -json` the harness reads.
type fortioJSON struct {
	ActualQPS         float64
	ActualDuration    int64 // ns
	RetCodes          map[string]int
	DurationHistogram struct {
		Count       int
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
}

// runLoad runs fortio with Istio's benchmark settings: uniform spacing,
// no catch-up, keep-alive connections, fine histogram buckets for
// sub-millisecond percentiles.
func runLoad(ctx context.Context, fortio, dir, name string, l load) (loadResult, error) {
	out := filepath.Join(dir, name+".json")
	args := []string{"load", "-quiet", "-json", out, "-r", "0.00001", "-p", "50,90,99,99.9",
		"-c", strconv.Itoa(l.Conn), "-qps", strconv.FormatFloat(l.QPS, 'f', -1, 64), "-allow-initial-errors"}
	if l.QPS > 0 {
		args = append(args, "-uniform", "-nocatchup")
	}
	if l.N > 0 {
		args = append(args, "-n", strconv.Itoa(l.N))
	} else {
		args = append(args, "-t", l.Duration.String())
	}
	if l.GRPC {
		args = append(args, "-grpc", "-ping", "-s", "1")
		if l.Payload > 0 {
			args = append(args, "-payload-size", strconv.Itoa(l.Payload))
		}
	} else if l.Payload > 0 {
		args = append(args, "-payload-size", strconv.Itoa(l.Payload))
	}
	args = append(args, l.URL)
	// Bound every run: its own length plus a margin.
	limit := l.Duration + 60*time.Second
	if l.N > 0 {
		limit = 60 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, fortio, args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("fortio %s: %v\n%s", strings.Join(args, " "), err, tailString(string(b), 1500))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return loadResult{}, err
	}
	var fj fortioJSON
	if err := json.Unmarshal(data, &fj); err != nil {
		return loadResult{}, fmt.Errorf("%s: %w", out, err)
	}
	r := loadResult{RPS: fj.ActualQPS, Requests: fj.DurationHistogram.Count, Seconds: float64(fj.ActualDuration) / 1e9}
	ok := 0
	for code, n := range fj.RetCodes {
		if code == "200" || code == "SERVING" {
			ok += n
		}
	}
	r.Errors = r.Requests - ok
	for _, p := range fj.DurationHistogram.Percentiles {
		ms := p.Value * 1000
		switch p.Percentile {
		case 50:
			r.P50 = ms
		case 90:
			r.P90 = ms
		case 99:
			r.P99 = ms
		case 99.9:
			r.P999 = ms
		}
	}
	return r, nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
