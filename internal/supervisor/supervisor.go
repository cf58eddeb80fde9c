// Package supervisor runs and watches the child processes of `weft up`:
// the control plane, one sidecar per workload instance and the workloads
// themselves.
//
// Every child runs in its own process group, so stopping it also stops
// whatever it started, and is started with Pdeathsig SIGKILL from one
// dedicated OS thread that lives as long as the Supervisor, so no child
// outlives a killed `weft up`. Output is streamed line by line with a
// padded, optionally coloured prefix ("reviews-v2-0 | ..."). A child that
// exits is restarted according to its policy with exponential backoff.
// Lifecycle changes are published as Events on a bounded channel that never
// blocks the supervisor.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// RestartPolicy says when an exited process is started again.
type RestartPolicy string

const (
	// RestartAlways restarts the process whenever it exits (the default).
	RestartAlways RestartPolicy = "always"
	// RestartOnFailure restarts the process when it exits with a non-zero
	// status or is killed by a signal.
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartNever leaves an exited process exited.
	RestartNever RestartPolicy = "never"
)

// DefaultGroupOrder is the order in which StopAll stops groups when
// Options.GroupOrder is empty: apps first, so they stop sending traffic,
// then their sidecars, then the control plane that configures them.
var DefaultGroupOrder = []string{"app", "sidecar", "controlplane"}

// Process describes one child process.
type Process struct {
	// Name identifies the process in logs, events and Status, e.g.
	// "reviews-v2-0". Required and unique within a Supervisor.
	Name string
	// Group orders shutdown ("app", "sidecar", "controlplane"); see
	// Options.GroupOrder.
	Group string
	// Command is the program and its arguments. A program name without a
	// slash is looked up in $PATH; a relative path is relative to Dir.
	Command []string
	// Env is added to the environment of the supervisor's own process;
	// entries here win over inherited ones of the same name.
	Env []string
	// Dir is the working directory; empty means the supervisor's.
	Dir string
	// Restart is the restart policy; empty means RestartAlways.
	Restart RestartPolicy
	// Ready, if set, is polled (every Options.ReadyInterval) after each
	// start until it returns nil, then the process is marked ready. It must
	// honour ctx. HTTPReady builds one.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds the readiness wait after each start; zero means
	// 30 s. When it passes, an EventNotReady is published and WaitReady
	// returns an error; the process keeps running.
	ReadyTimeout time.Duration
	// Log, if set, also receives every line of the process's output and
	// the supervisor's notes about it, one Write per line ending in '\n'.
	// It is written from the supervisor's goroutines, one at a time; its
	// errors are ignored.
	Log io.Writer
	// Quiet, if set, keeps the lines it returns true for off Output (they
	// still go to Log): for example a sidecar's access log lines.
	Quiet func(line []byte) bool
}

// ColorMode says whether log prefixes are coloured.
type ColorMode int

const (
	// ColorAuto colours prefixes when Output is a terminal and NO_COLOR is
	// not set.
	ColorAuto ColorMode = iota
	// ColorAlways always colours prefixes.
	ColorAlways
	// ColorNever never colours prefixes.
	ColorNever
)

// Options configure a Supervisor. The zero value is usable.
type Options struct {
	// Output receives the prefixed output of every child and the
	// supervisor's own lines. Default os.Stdout. Writes are serialised.
	Output io.Writer
	// Color says whether prefixes are coloured. Default ColorAuto.
	Color ColorMode
	// PrefixWidth pads names to this width; zero pads to the longest name
	// started so far.
	PrefixWidth int
	// GroupOrder is the order in which StopAll stops groups. Processes in
	// groups not listed are stopped first. Default DefaultGroupOrder.
	GroupOrder []string
	// StopGrace is how long a process group has between SIGTERM and
	// SIGKILL. Default 5 s.
	StopGrace time.Duration
	// BackoffMin is the first restart delay; it doubles up to BackoffMax.
	// Defaults 200 ms and 10 s.
	BackoffMin time.Duration
	// BackoffMax caps the restart delay.
	BackoffMax time.Duration
	// BackoffReset: a process that ran at least this long before exiting
	// is restarted after BackoffMin again. Default 30 s.
	BackoffReset time.Duration
	// ReadyInterval is the pause between readiness checks. Default 100 ms.
	ReadyInterval time.Duration
	// EventBuffer is the capacity of the Events channel; events that do
	// not fit are dropped and counted (DroppedEvents). Default 256.
	EventBuffer int
}

func (o *Options) defaults() {
	if o.Output == nil {
		o.Output = os.Stdout
	}
	if len(o.GroupOrder) == 0 {
		o.GroupOrder = DefaultGroupOrder
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 5 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 200 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 10 * time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.BackoffReset <= 0 {
		o.BackoffReset = 30 * time.Second
	}
	if o.ReadyInterval <= 0 {
		o.ReadyInterval = 100 * time.Millisecond
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 256
	}
}

// EventType names a lifecycle change.
type EventType string

const (
	// EventStarted: the process was started (first time or restart).
	EventStarted EventType = "started"
	// EventReady: its readiness check passed.
	EventReady EventType = "ready"
	// EventNotReady: its readiness check did not pass within ReadyTimeout
	// (Err says why).
	EventNotReady EventType = "not-ready"
	// EventExited: the process exited on its own, or could not be
	// restarted (Exit says how).
	EventExited EventType = "exited"
	// EventRestarting: it will be started again after Delay.
	EventRestarting EventType = "restarting"
	// EventStopped: it was stopped by Stop or StopAll and has exited.
	EventStopped EventType = "stopped"
)

// Event is one lifecycle change of one process.
type Event struct {
	// Time is when it happened.
	Time time.Time
	// Type is what happened.
	Type EventType
	// Name and Group are the process's.
	Name, Group string
	// PID is the process id of the run the event is about (0 if it never
	// started).
	PID int
	// Restarts is how many times the process had been restarted.
	Restarts int
	// Exit describes how the run ended ("exit status 1", "signal: killed")
	// for EventExited and EventStopped.
	Exit string
	// Delay is the backoff before the restart, for EventRestarting.
	Delay time.Duration
	// Err is the readiness error for EventNotReady, or the start error
	// when a restart could not start the command.
	Err error
}

// State is where a process is in its life.
type State string

const (
	StateRunning  State = "running"  // started, not (yet) asked to stop
	StateBackoff  State = "backoff"  // exited, waiting to be restarted
	StateStopping State = "stopping" // asked to stop, not exited yet
	StateStopped  State = "stopped"  // stopped by Stop or StopAll
	StateExited   State = "exited"   // exited and will not be restarted
)

// ProcessStatus is a snapshot of one process.
type ProcessStatus struct {
	Name, Group string
	// PID of the current run; 0 when not running.
	PID int
	// State is the lifecycle state.
	State State
	// Ready is true once the readiness check of the current run passed
	// (always true for a running process without one).
	Ready bool
	// Restarts counts restarts.
	Restarts int
	// StartedAt is when the current or last run started.
	StartedAt time.Time
	// LastExit describes how the last run ended; empty if none has.
	LastExit string
	// LastExitAt is when it ended.
	LastExitAt time.Time
}

// ErrCommandNotFound is wrapped by the *CommandError returned when a
// Process's command does not exist or is not executable.
var ErrCommandNotFound = errors.New("command not found")

// CommandError says why a command cannot be run. Its message names the
// command and the reason; the caller adds what it was for and what to do,
// e.g. fmt.Errorf("workload %s: %w: check spec.command", name, err).
type CommandError struct {
	// Command is the program as given in Process.Command[0].
	Command string
	// Reason is e.g. "not found in $PATH".
	Reason string
	// Err is ErrCommandNotFound or the underlying error.
	Err error
}

func (e *CommandError) Error() string { return fmt.Sprintf("command %q %s", e.Command, e.Reason) }

// Unwrap returns Err.
func (e *CommandError) Unwrap() error { return e.Err }

// Supervisor starts, restarts and stops child processes. Its methods are
// safe for concurrent use. Call Close when done.
type Supervisor struct {
	opts    Options
	out     *output
	events  chan Event
	dropped atomic.Uint64

	startReq    chan startRequest
	starterDone chan struct{}

	mu      sync.Mutex
	procs   map[string]*Handle
	order   []*Handle
	closing bool
	wg      sync.WaitGroup // monitors and readiness checkers

	closeOnce sync.Once
}

type startRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// New returns a Supervisor. It starts one goroutine locked to its OS thread
// from which every child is started; Close ends it.
func New(opts Options) *Supervisor {
	opts.defaults()
	s := &Supervisor{
		opts:        opts,
		out:         newOutput(opts.Output, useColor(opts.Color, opts.Output), opts.PrefixWidth),
		events:      make(chan Event, opts.EventBuffer),
		startReq:    make(chan startRequest),
		starterDone: make(chan struct{}),
		procs:       map[string]*Handle{},
	}
	go s.starter()
	return s
}

// starter starts every child from one locked OS thread. Pdeathsig fires
// when the thread that forked a child exits, not when the process does, so
// children must not be forked from threads the Go runtime may retire. The
// thread is never unlocked: when the goroutine returns the thread ends
// with it, which SIGKILLs any child still alive.
func (s *Supervisor) starter() {
	runtime.LockOSThread()
	defer close(s.starterDone)
	for req := range s.startReq {
		req.done <- req.cmd.Start()
	}
}

func (s *Supervisor) startCmd(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.startReq <- startRequest{cmd: cmd, done: done}
	return <-done
}

// Events returns the channel of lifecycle events. It is closed by Close.
// Events that do not fit are dropped, never waited for.
func (s *Supervisor) Events() <-chan Event { return s.events }

// DroppedEvents counts events dropped because the channel was full.
func (s *Supervisor) DroppedEvents() uint64 { return s.dropped.Load() }

func (s *Supervisor) emit(ev Event) {
	ev.Time = time.Now()
	select {
	case s.events <- ev:
	default:
		s.dropped.Add(1)
	}
}

// Start starts spec's command and watches it until it is stopped. It
// returns once the process has started; use Handle.WaitReady to wait for
// readiness. A missing or non-executable command gives a *CommandError
// (errors.Is ErrCommandNotFound) that the caller should wrap with what the
// process is for. ctx bounds the start only; the process runs until Stop,
// StopAll or Close.
func (s *Supervisor) Start(ctx context.Context, spec Process) (*Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.Name == "" {
		return nil, errors.New("process has no name")
	}
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return nil, fmt.Errorf("process %s has no command", spec.Name)
	}
	switch spec.Restart {
	case "":
		spec.Restart = RestartAlways
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		return nil, fmt.Errorf("process %s: unknown restart policy %q (want always, on-failure or never)", spec.Name, spec.Restart)
	}
	if spec.ReadyTimeout <= 0 {
		spec.ReadyTimeout = 30 * time.Second
	}
	if err := CheckCommand(spec); err != nil {
		return nil, err
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, fmt.Errorf("process %s: supervisor is stopping", spec.Name)
	}
	if _, dup := s.procs[spec.Name]; dup {
		s.mu.Unlock()
		return nil, fmt.Errorf("process %s is already supervised", spec.Name)
	}
	h := &Handle{
		s:       s,
		spec:    spec,
		color:   palette[len(s.order)%len(palette)],
		changed: make(chan struct{}),
		stopCh:  make(chan struct{}),
		killCh:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	h.st = ProcessStatus{Name: spec.Name, Group: spec.Group}
	s.procs[spec.Name] = h
	s.order = append(s.order, h)
	s.wg.Add(1)
	s.mu.Unlock()
	s.out.register(spec.Name)

	p, err := h.start()
	if err != nil {
		h.flush()
		s.mu.Lock()
		s.drop(h)
		s.mu.Unlock()
		h.update(func(st *ProcessStatus) { st.State = StateExited; st.LastExit = err.Error() })
		close(h.done) // a concurrent StopAll may be waiting for it
		s.wg.Done()
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, &CommandError{Command: spec.Command[0], Reason: "not found", Err: ErrCommandNotFound}
		}
		return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
	}
	h.started(p)
	go h.run(p)
	return h, nil
}

// CheckCommand resolves spec's program the way exec would, to give an error
// that says what is wrong before anything is started.
func CheckCommand(spec Process) error {
	name := spec.Command[0]
	if !strings.Contains(name, "/") {
		if _, err := exec.LookPath(name); err != nil && !errors.Is(err, exec.ErrDot) {
			return &CommandError{Command: name, Reason: "not found in $PATH", Err: ErrCommandNotFound}
		}
		return nil
	}
	p := name
	if !filepath.IsAbs(p) && spec.Dir != "" {
		p = filepath.Join(spec.Dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		where := ""
		if !filepath.IsAbs(name) {
			dir := spec.Dir
			if dir == "" {
				dir, _ = os.Getwd()
			}
			where = " in " + dir
		}
		return &CommandError{Command: name, Reason: "not found" + where, Err: ErrCommandNotFound}
	case err != nil:
		return &CommandError{Command: name, Reason: "cannot be read: " + err.Error(), Err: err}
	case fi.IsDir():
		return &CommandError{Command: name, Reason: "is a directory, not a program", Err: ErrCommandNotFound}
	case fi.Mode().Perm()&0o111 == 0:
		return &CommandError{Command: name, Reason: "is not executable (chmod +x)", Err: ErrCommandNotFound}
	}
	return nil
}

// forget drops a finished process from the supervisor's lists, unless
// its name already belongs to another one. Once StopAll has begun,
// stopped processes stay listed (as stopped): nothing starts again.
func (s *Supervisor) forget(h *Handle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.drop(h)
	}
}

// drop removes h from the supervisor's lists, unless its name already
// belongs to another process. s.mu is held.
func (s *Supervisor) drop(h *Handle) {
	if s.procs[h.spec.Name] == h {
		delete(s.procs, h.spec.Name)
	}
	s.order = slices.DeleteFunc(s.order, func(x *Handle) bool { return x == h })
}

// Status returns a snapshot of every process, sorted by name.
func (s *Supervisor) Status() []ProcessStatus {
	s.mu.Lock()
	hs := slices.Clone(s.order)
	s.mu.Unlock()
	out := make([]ProcessStatus, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Status())
	}
	slices.SortFunc(out, func(a, b ProcessStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// StopAll stops every process, one group at a time in Options.GroupOrder
// (groups not listed first). Each process group gets SIGTERM, then SIGKILL
// after Options.StopGrace. If ctx ends first, every remaining group is
// SIGKILLed at once. StopAll returns when every process has exited; the
// error is non-nil only if ctx ended. No new process can be started once
// StopAll has begun.
func (s *Supervisor) StopAll(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	hs := slices.Clone(s.order)
	s.mu.Unlock()

	rank := func(group string) int {
		if i := slices.Index(s.opts.GroupOrder, group); i >= 0 {
			return i + 1
		}
		return 0
	}
	slices.SortStableFunc(hs, func(a, b *Handle) int { return rank(a.spec.Group) - rank(b.spec.Group) })

	for i := 0; i < len(hs); {
		j := i
		for j < len(hs) && rank(hs[j].spec.Group) == rank(hs[i].spec.Group) {
			j++
		}
		var wg sync.WaitGroup
		for _, h := range hs[i:j] {
			wg.Go(func() { _ = h.Stop(ctx) })
		}
		wg.Wait()
		i = j
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stopping processes: killed the rest: %w", ctx.Err())
	}
	return nil
}

// Close stops every process (as StopAll with no deadline beyond the grace
// period), waits for every goroutine of the supervisor, ends its start
// thread and closes the Events channel. It is safe to call more than once.
func (s *Supervisor) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.StopAll(context.Background())
		s.wg.Wait()
		close(s.startReq)
		<-s.starterDone
		close(s.events)
	})
	return err
}

// HTTPReady returns a readiness check that GETs url and wants status 200.
func HTTPReady(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := newGet(ctx, url)
		if err != nil {
			return err
		}
		resp, err := readyClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// exitString describes how a run ended.
func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func failed(err error) bool { return err != nil }

// signalGroup sends sig to the process group led by pid; a group that is
// already gone is not an error.
func signalGroup(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, sig)
}
