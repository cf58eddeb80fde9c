package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

// helperEnv selects a helper mode when the test binary runs as a child.
const helperEnv = "WEFT_SUPERVISOR_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	goleak.VerifyTestMain(m)
}

// helper is what a child process does, by mode. Files it is told about
// come in the environment: READY_FILE (created once it is set up),
// LOG_FILE (appended to on SIGTERM), PID_FILE (its own pid).
func helper(mode string) int {
	ready := func() {
		if f := os.Getenv("READY_FILE"); f != "" {
			writeAtomic(f, strconv.Itoa(os.Getpid()))
		}
	}
	switch mode {
	case "lines":
		fmt.Println("hello")
		fmt.Fprintln(os.Stderr, "oops")
		fmt.Print("tail without newline")
		return 0
	case "exit":
		code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
		fmt.Println("exiting with", code)
		return code
	case "term-log":
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		ready()
		<-term
		f, err := os.OpenFile(os.Getenv("LOG_FILE"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err == nil {
			fmt.Fprintln(f, os.Getenv("GROUP"))
			f.Close()
		}
		return 0
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		ready()
		time.Sleep(time.Hour)
		return 0
	case "parent":
		// Start a grandchild that ignores SIGTERM, then wait to be
		// terminated; the grandchild is ready when its pid file exists.
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=ignore-term")
		cmd.Stdout = os.Stdout
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		time.Sleep(time.Hour)
		return 0
	case "supervise":
		// Play `weft up`: supervise one sleeper, then wait to be killed.
		s := New(Options{Output: os.Stdout, Color: ColorNever})
		_, err := s.Start(context.Background(), Process{Name: "sleeper", Command: []string{os.Args[0]}, Env: []string{helperEnv + "=sleep"}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		time.Sleep(time.Hour)
		return 0
	case "sleep":
		ready()
		time.Sleep(time.Hour)
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

func writeAtomic(path, content string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err == nil {
		_ = os.Rename(tmp, path)
	}
}

// self is the command that re-runs the test binary in a helper mode.
func self() []string { return []string{os.Args[0]} }

func helperEnvs(mode string, kv ...string) []string {
	return append([]string{helperEnv + "=" + mode}, kv...)
}

// fileReady is a readiness check: the file exists.
func fileReady(path string) func(context.Context) error {
	return func(context.Context) error {
		_, err := os.Stat(path)
		return err
	}
}

// syncBuffer is an io.Writer safe for the supervisor's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newSupervisor returns a supervisor closed at the end of the test, with
// fast backoff and a short grace period.
func newSupervisor(t *testing.T, out *syncBuffer, mod func(*Options)) *Supervisor {
	t.Helper()
	opts := Options{
		Output:     out,
		Color:      ColorNever,
		StopGrace:  2 * time.Second,
		BackoffMin: 10 * time.Millisecond,
		BackoffMax: 40 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	s := New(opts)
	t.Cleanup(func() { s.Close() })
	return s
}

// waitEvent returns the next event of name matching want, failing the test
// when ctx ends first. Other events are skipped.
func waitEvent(ctx context.Context, t *testing.T, s *Supervisor, name string, want EventType) Event {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s %s", name, want)
			}
			if ev.Name == name && ev.Type == want {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no %s event for %s: %v", want, name, ctx.Err())
		}
	}
}

func TestPrefixedOutput(t *testing.T) {
	tests := []struct {
		name  string
		color ColorMode
		width int
		want  []string
	}{
		{
			name:  "plain",
			color: ColorNever,
			want: []string{
				"lines-0 | hello",
				"lines-0 | oops",
				"lines-0 | tail without newline",
				"lines-0 | weft: exited (exit status 0); restart policy never, not restarting",
			},
		},
		{
			name:  "padded",
			color: ColorNever,
			width: 12,
			want: []string{
				"lines-0      | hello",
				"lines-0      | oops",
				"lines-0      | tail without newline",
				"lines-0      | weft: exited (exit status 0); restart policy never, not restarting",
			},
		},
		{
			name:  "colour",
			color: ColorAlways,
			want: []string{
				"\x1b[36mlines-0 |\x1b[0m hello",
				"\x1b[36mlines-0 |\x1b[0m oops",
				"\x1b[36mlines-0 |\x1b[0m tail without newline",
				"\x1b[36mlines-0 |\x1b[0m weft: exited (exit status 0); restart policy never, not restarting",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			var out syncBuffer
			s := newSupervisor(t, &out, func(o *Options) { o.Color = tc.color; o.PrefixWidth = tc.width })
			h, err := s.Start(ctx, Process{Name: "lines-0", Group: "app", Command: self(), Env: helperEnvs("lines"), Restart: RestartNever})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-h.Done():
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			// stdout and stderr are separate streams: their order is not fixed.
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if st := h.Status(); st.State != StateExited || st.LastExit != "exit status 0" {
				t.Errorf("status = %+v, want exited with exit status 0", st)
			}
		})
	}
}

func TestLogSinkAndQuietLines(t *testing.T) {
	ctx := testContext(t)
	var out, log syncBuffer
	s := newSupervisor(t, &out, func(o *Options) { o.Color = ColorNever })
	h, err := s.Start(ctx, Process{
		Name: "lines-0", Group: "app", Command: self(), Env: helperEnvs("lines"), Restart: RestartNever,
		Log:   &log,
		Quiet: func(line []byte) bool { return strings.HasPrefix(string(line), "oops") },
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Done():
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	sorted := func(s string) []string {
		l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		slices.Sort(l)
		return l
	}
	wantLog := sorted("hello\noops\ntail without newline\nweft: exited (exit status 0); restart policy never, not restarting\n")
	if diff := cmp.Diff(wantLog, sorted(log.String())); diff != "" {
		t.Errorf("log sink (-want +got):\n%s", diff)
	}
	wantOut := sorted("lines-0 | hello\nlines-0 | tail without newline\nlines-0 | weft: exited (exit status 0); restart policy never, not restarting\n")
	if diff := cmp.Diff(wantOut, sorted(out.String())); diff != "" {
		t.Errorf("terminal output without the quiet line (-want +got):\n%s", diff)
	}
}

func TestRestartPolicy(t *testing.T) {
	tests := []struct {
		name    string
		policy  RestartPolicy
		code    int
		restart bool
	}{
		{name: "always restarts a clean exit", policy: RestartAlways, code: 0, restart: true},
		{name: "default is always", policy: "", code: 3, restart: true},
		{name: "on-failure restarts a failure", policy: RestartOnFailure, code: 3, restart: true},
		{name: "on-failure leaves a clean exit", policy: RestartOnFailure, code: 0, restart: false},
		{name: "never leaves a failure", policy: RestartNever, code: 3, restart: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			var out syncBuffer
			s := newSupervisor(t, &out, nil)
			h, err := s.Start(ctx, Process{Name: "p", Command: self(), Env: helperEnvs("exit", "EXIT_CODE="+strconv.Itoa(tc.code)), Restart: tc.policy})
			if err != nil {
				t.Fatal(err)
			}
			ev := waitEvent(ctx, t, s, "p", EventExited)
			if want := fmt.Sprintf("exit status %d", tc.code); ev.Exit != want {
				t.Errorf("exit = %q, want %q", ev.Exit, want)
			}
			if !tc.restart {
				<-h.Done()
				if st := h.Status(); st.State != StateExited || st.Restarts != 0 {
					t.Errorf("status = %+v, want exited without restarts", st)
				}
				return
			}
			waitEvent(ctx, t, s, "p", EventRestarting)
			waitEvent(ctx, t, s, "p", EventStarted)
		})
	}
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	ctx := testContext(t)
	var out syncBuffer
	s := newSupervisor(t, &out, nil)
	_, err := s.Start(ctx, Process{Name: "crasher-0", Group: "app", Command: self(), Env: helperEnvs("exit", "EXIT_CODE=3")})
	if err != nil {
		t.Fatal(err)
	}
	var delays []time.Duration
	for len(delays) < 4 {
		ev := waitEvent(ctx, t, s, "crasher-0", EventRestarting)
		if ev.Exit != "exit status 3" {
			t.Errorf("restarting event exit = %q, want exit status 3", ev.Exit)
		}
		delays = append(delays, ev.Delay)
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond}
	if diff := cmp.Diff(want, delays); diff != "" {
		t.Errorf("backoff delays (-want +got):\n%s", diff)
	}
	st := s.Status()
	if len(st) != 1 || st[0].Restarts < 3 || st[0].LastExit != "exit status 3" {
		t.Errorf("status = %+v, want >= 3 restarts, last exit status 3", st)
	}
	if !strings.Contains(out.String(), "crasher-0 | weft: exited (exit status 3); restarting in 20ms") {
		t.Errorf("no restart log line in output:\n%s", out.String())
	}
	if err := s.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Status()[0].State; got != StateStopped {
		t.Errorf("state after StopAll = %s, want stopped", got)
	}
}

func TestStopAllGroupOrder(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "log")
	var out syncBuffer
	s := newSupervisor(t, &out, nil)
	procs := []struct{ name, group string }{
		{"controlplane", "controlplane"},
		{"reviews-v1-0-proxy", "sidecar"},
		{"reviews-v1-0", "app"},
		{"ratings-0-proxy", "sidecar"},
		{"ratings-0", "app"},
	}
	var handles []*Handle
	for _, p := range procs {
		ready := filepath.Join(dir, p.name+".ready")
		h, err := s.Start(ctx, Process{
			Name: p.name, Group: p.group, Command: self(),
			Env:   helperEnvs("term-log", "READY_FILE="+ready, "LOG_FILE="+logFile, "GROUP="+p.group),
			Ready: fileReady(ready),
		})
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, h)
	}
	for _, h := range handles {
		if err := h.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"app", "app", "sidecar", "sidecar", "controlplane"}
	if diff := cmp.Diff(want, strings.Fields(string(data))); diff != "" {
		t.Errorf("order of SIGTERM handling (-want +got):\n%s", diff)
	}
	for _, st := range s.Status() {
		if st.State != StateStopped || st.PID != 0 || st.Ready {
			t.Errorf("%s: status = %+v, want stopped", st.Name, st)
		}
	}
	if _, err := s.Start(ctx, Process{Name: "late", Command: self()}); err == nil {
		t.Error("Start after StopAll succeeded, want error")
	}
}

func TestStopAllKillsAfterGrace(t *testing.T) {
	ctx := testContext(t)
	ready := filepath.Join(t.TempDir(), "ready")
	var out syncBuffer
	s := newSupervisor(t, &out, func(o *Options) { o.StopGrace = 100 * time.Millisecond })
	h, err := s.Start(ctx, Process{Name: "stubborn", Command: self(), Env: helperEnvs("ignore-term", "READY_FILE="+ready), Ready: fileReady(ready)})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(ctx, t, s, "stubborn", EventStopped)
	if ev.Exit != "signal: killed" {
		t.Errorf("stopped event exit = %q, want signal: killed", ev.Exit)
	}
	if !strings.Contains(out.String(), "stubborn | weft: still running 100ms after SIGTERM; sending SIGKILL") {
		t.Errorf("no kill log line in output:\n%s", out.String())
	}
}

func TestStopAllWithExpiredContextKillsAtOnce(t *testing.T) {
	ctx := testContext(t)
	ready := filepath.Join(t.TempDir(), "ready")
	var out syncBuffer
	s := newSupervisor(t, &out, func(o *Options) { o.StopGrace = time.Hour })
	h, err := s.Start(ctx, Process{Name: "stubborn", Command: self(), Env: helperEnvs("ignore-term", "READY_FILE="+ready), Ready: fileReady(ready)})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.StopAll(expired); !errors.Is(err, context.Canceled) {
		t.Errorf("StopAll = %v, want context.Canceled", err)
	}
	if st := h.Status(); st.State != StateStopped || st.LastExit != "signal: killed" {
		t.Errorf("status = %+v, want stopped by signal: killed", st)
	}
}

func TestStopAllLeavesNoGrandchild(t *testing.T) {
	ctx := testContext(t)
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	var out syncBuffer
	s := newSupervisor(t, &out, func(o *Options) { o.StopGrace = 200 * time.Millisecond })
	h, err := s.Start(ctx, Process{Name: "parent", Command: self(), Env: helperEnvs("parent", "READY_FILE="+pidFile), Ready: fileReady(pidFile)})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if !alive(pid) {
		t.Fatalf("grandchild %d not running before StopAll", pid)
	}
	if err := s.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	// The grandchild was SIGKILLed with its group; its reaping by init is
	// asynchronous, so poll until it is gone or a zombie.
	for alive(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("grandchild %d still alive after StopAll", pid)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestChildDiesWithKilledSupervisor(t *testing.T) {
	ctx := testContext(t)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=supervise", "READY_FILE="+pidFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for {
		if data, err := os.ReadFile(pidFile); err == nil {
			if pid, err = strconv.Atoi(string(data)); err != nil {
				t.Fatal(err)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("supervised child never wrote %s", pidFile)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// Pdeathsig: the kernel SIGKILLs the child when the supervisor dies.
	for alive(pid) {
		select {
		case <-ctx.Done():
			t.Fatalf("child %d outlived its killed supervisor", pid)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func TestCommandNotFound(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command string
		want    string
	}{
		{name: "relative path", command: "./nope", want: `command "./nope" not found in ` + dir},
		{name: "absolute path", command: "/no/such/weft-app", want: `command "/no/such/weft-app" not found`},
		{name: "not in PATH", command: "weft-no-such-program", want: `command "weft-no-such-program" not found in $PATH`},
		{name: "not executable", command: "./data.txt", want: `command "./data.txt" is not executable (chmod +x)`},
		{name: "directory", command: "/", want: `command "/" is a directory, not a program`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			var out syncBuffer
			s := newSupervisor(t, &out, nil)
			_, err := s.Start(ctx, Process{Name: "reviews-v2-0", Command: []string{tc.command}, Dir: dir})
			if err == nil {
				t.Fatal("Start succeeded, want error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error = %q, want %q", got, tc.want)
			}
			if !errors.Is(err, ErrCommandNotFound) {
				t.Errorf("errors.Is(%v, ErrCommandNotFound) = false", err)
			}
			if len(s.Status()) != 0 {
				t.Errorf("status after failed start = %+v, want none", s.Status())
			}
		})
	}
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		name    string
		ready   func(ready string) func(context.Context) error
		timeout time.Duration
		wantErr string
	}{
		{name: "no check is ready at once"},
		{name: "file appears", ready: fileReady},
		{
			name:    "never ready times out",
			ready:   func(string) func(context.Context) error { return fileReady("/no/such/file") },
			timeout: 200 * time.Millisecond,
			wantErr: "sleeper not ready after 200ms: stat /no/such/file: no such file or directory",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			readyFile := filepath.Join(t.TempDir(), "ready")
			var out syncBuffer
			s := newSupervisor(t, &out, func(o *Options) { o.ReadyInterval = 10 * time.Millisecond })
			spec := Process{Name: "sleeper", Command: self(), Env: helperEnvs("sleep", "READY_FILE="+readyFile), ReadyTimeout: tc.timeout}
			if tc.ready != nil {
				spec.Ready = tc.ready(readyFile)
			}
			h, err := s.Start(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			err = h.WaitReady(ctx)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("WaitReady = %v, want %q", err, tc.wantErr)
				}
				ev := waitEvent(ctx, t, s, "sleeper", EventNotReady)
				if ev.Err == nil || ev.Err.Error() != tc.wantErr {
					t.Errorf("not-ready event error = %v, want %q", ev.Err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.ready != nil {
				waitEvent(ctx, t, s, "sleeper", EventReady)
			}
			if st := h.Status(); !st.Ready || st.State != StateRunning || st.PID == 0 {
				t.Errorf("status = %+v, want running and ready", st)
			}
		})
	}
}

func TestHTTPReady(t *testing.T) {
	ctx := testContext(t)
	if err := HTTPReady("http://127.0.0.1:1/healthz")(ctx); err == nil {
		t.Error("HTTPReady on a closed port = nil, want error")
	}
}

func TestEventsNeverBlock(t *testing.T) {
	ctx := testContext(t)
	var out syncBuffer
	s := newSupervisor(t, &out, func(o *Options) { o.EventBuffer = 1 })
	h, err := s.Start(ctx, Process{Name: "p", Command: self(), Env: helperEnvs("exit", "EXIT_CODE=0"), Restart: RestartNever})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody reads events: started fills the buffer, exited is dropped,
	// and the process still finishes.
	select {
	case <-h.Done():
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if got := s.DroppedEvents(); got != 1 {
		t.Errorf("DroppedEvents = %d, want 1", got)
	}
}

func TestStopOne(t *testing.T) {
	ctx := testContext(t)
	var out syncBuffer
	s := newSupervisor(t, &out, nil)
	h, err := s.Start(ctx, Process{Name: "sleeper", Command: self(), Env: helperEnvs("sleep")})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(ctx, t, s, "sleeper", EventStopped)
	if ev.Exit != "signal: terminated" {
		t.Errorf("stopped event exit = %q, want signal: terminated", ev.Exit)
	}
}

// TestStartAgainAfterStop: a stopped process's name can be started
// again (weft up restarts an instance whose Workload changed under its
// name); a running one's cannot.
func TestStartAgainAfterStop(t *testing.T) {
	ctx := testContext(t)
	var out syncBuffer
	s := newSupervisor(t, &out, nil)
	spec := Process{Name: "sleeper", Command: self(), Env: helperEnvs("sleep")}
	h, err := s.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, spec); err == nil || !strings.Contains(err.Error(), "already supervised") {
		t.Fatalf("a second start of a running process: %v; want already supervised", err)
	}
	if err := h.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	h2, err := s.Start(ctx, spec)
	if err != nil {
		t.Fatalf("start after stop: %v", err)
	}
	if st := s.Status(); len(st) != 1 || st[0].Name != "sleeper" || st[0].State == StateStopped {
		t.Errorf("status %+v; want the new sleeper alone", st)
	}
	if err := h2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
