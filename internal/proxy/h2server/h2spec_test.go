package h2server

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve runs h2server on a loopback listener until the test ends and
// returns its address. Every connection is served by NewConn(...).Serve.
func serve(t *testing.T, h http.Handler, opts Options) (addr string, conns func() []*Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Handler = h
	var (
		mu  sync.Mutex
		all []*Conn
		wg  sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc := NewConn(c, nil, opts)
			mu.Lock()
			all = append(all, sc)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); sc.Serve() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, sc := range all {
			sc.mu.Lock()
			sc.closeLocked()
			sc.mu.Unlock()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), func() []*Conn {
		mu.Lock()
		defer mu.Unlock()
		return append([]*Conn(nil), all...)
	}
}

// buildH2spec builds h2spec, the HTTP/2 conformance suite, from the tools
// module (cached by go build after the first time).
func buildH2spec(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds h2spec; skipped under -short")
	}
	bin := filepath.Join(t.TempDir(), "h2spec")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/summerwind/h2spec/cmd/h2spec")
	cmd.Dir = "../../../tools"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building h2spec: %v\n%s", err, out)
	}
	return bin
}

// TestH2spec runs h2spec's whole suite (RFC 7540 and HPACK, its strict
// cases included) against the server: every case must pass.
func TestH2spec(t *testing.T) {
	bin := buildH2spec(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello")
	})
	addr, _ := serve(t, h, Options{})
	_, port, _ := net.SplitHostPort(addr)
	report := filepath.Join(t.TempDir(), "report.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--strict", "-h", "127.0.0.1", "-p", port, "-o", "2", "-j", report)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	failed := failedCases(t, report)
	if len(failed) > 0 || err != nil {
		t.Fatalf("h2spec: %v; failed cases:\n%s\n\noutput tail:\n%s", err, strings.Join(failed, "\n"), tail(out.String(), 4000))
	}
	passed := strings.Count(out.String(), "✔")
	if passed < 140 {
		t.Fatalf("h2spec passed only %d cases:\n%s", passed, tail(out.String(), 4000))
	}
	t.Logf("h2spec: %d cases passed", passed)
}

// failedCases reads h2spec's JUnit report.
func failedCases(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{"no report: " + err.Error()}
	}
	var suites struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	// Frames h2spec received are quoted in the report, control bytes
	// and all: XML does not allow them.
	b = bytes.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' {
			return -1
		}
		return r
	}, b)
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	var failed []string
	for _, s := range suites.Suites {
		for _, c := range s.Cases {
			if c.Failure != nil || c.Error != nil {
				failed = append(failed, s.Name+": "+c.Name)
			}
		}
	}
	return failed
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

var _ = strconv.Itoa
