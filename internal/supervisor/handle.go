package supervisor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// waitDelay bounds how long the end of a run waits for the rest of its
// output after the process exited and its group was killed.
const waitDelay = 2 * time.Second

// Handle is one supervised process, across its restarts. Its methods are
// safe for concurrent use.
type Handle struct {
	s     *Supervisor
	spec  Process
	color string

	stdout, stderr *lineWriter // reused across runs, written by exec's copiers
	logMu          sync.Mutex  // serialises writes to spec.Log from both streams

	mu       sync.Mutex
	st       ProcessStatus
	gen      int           // run number, to ignore stale readiness results
	readyErr error         // readiness failure of the current run
	changed  chan struct{} // closed and replaced on every change of st

	stopOnce sync.Once
	stopCh   chan struct{} // closed to ask for a stop
	killOnce sync.Once
	killCh   chan struct{} // closed to skip the grace period
	done     chan struct{} // closed when the process is finished for good
}

// Name returns the process name.
func (h *Handle) Name() string { return h.spec.Name }

// Status returns a snapshot of the process.
func (h *Handle) Status() ProcessStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

// Done is closed when the process has exited for good: stopped, or exited
// without a restart.
func (h *Handle) Done() <-chan struct{} { return h.done }

// WaitReady waits until the current run's readiness check passes (at once
// for a process without one). It returns an error when the check timed
// out, the process finished for good, or ctx ended.
func (h *Handle) WaitReady(ctx context.Context) error {
	for {
		h.mu.Lock()
		st, rerr, ch := h.st, h.readyErr, h.changed
		h.mu.Unlock()
		switch {
		case st.Ready:
			return nil
		case rerr != nil:
			return rerr
		case st.State == StateStopped || st.State == StateExited:
			return fmt.Errorf("%s %s before it was ready (%s)", h.spec.Name, st.State, st.LastExit)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be ready: %w", h.spec.Name, ctx.Err())
		}
	}
}

// Stop stops this process: SIGTERM to its process group, SIGKILL after the
// grace period, or at once when ctx ends. It returns when the process has
// exited; the error is non-nil only if ctx ended first.
func (h *Handle) Stop(ctx context.Context) error {
	h.stopOnce.Do(func() { close(h.stopCh) })
	// A stopped process is finished for good: the supervisor forgets it,
	// so that its name can be started again (an instance whose Workload
	// changed is stopped, then started anew under the same name).
	defer h.s.forget(h)
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		h.killOnce.Do(func() { close(h.killCh) })
		<-h.done
		return ctx.Err()
	}
}

// update changes the status under the lock and wakes WaitReady.
func (h *Handle) update(f func(st *ProcessStatus)) {
	h.mu.Lock()
	f(&h.st)
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

func (h *Handle) event(t EventType, pid int, f func(ev *Event)) {
	h.mu.Lock()
	restarts := h.st.Restarts
	h.mu.Unlock()
	ev := Event{Type: t, Name: h.spec.Name, Group: h.spec.Group, PID: pid, Restarts: restarts}
	if f != nil {
		f(&ev)
	}
	h.s.emit(ev)
}

func (h *Handle) logf(format string, args ...any) {
	text := []byte("weft: " + fmt.Sprintf(format, args...))
	h.s.out.line(h.spec.Name, h.color, text)
	if h.spec.Log != nil {
		h.logMu.Lock()
		_, _ = h.spec.Log.Write(append(text, '\n'))
		h.logMu.Unlock()
	}
}

// proc is one run of the process: the command and the read ends of its
// output pipes. The pipes are the supervisor's own rather than exec's, so
// the end of a run is seen when the process exits, not when the last
// holder of its output (a grandchild, say) lets go.
type proc struct {
	cmd        *exec.Cmd
	rOut, rErr *os.File
	copied     sync.WaitGroup
}

// start builds and starts one run from the supervisor's start thread.
func (h *Handle) start() (*proc, error) {
	if h.stdout == nil {
		h.stdout = &lineWriter{out: h.s.out, name: h.spec.Name, color: h.color, log: h.spec.Log, logMu: &h.logMu, quiet: h.spec.Quiet}
		h.stderr = &lineWriter{out: h.s.out, name: h.spec.Name, color: h.color, log: h.spec.Log, logMu: &h.logMu, quiet: h.spec.Quiet}
	}
	rOut, wOut, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	rErr, wErr, err := os.Pipe()
	if err != nil {
		rOut.Close()
		wOut.Close()
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd := exec.Command(h.spec.Command[0], h.spec.Command[1:]...)
	cmd.Dir = h.spec.Dir
	cmd.Env = append(os.Environ(), h.spec.Env...)
	cmd.Stdout = wOut
	cmd.Stderr = wErr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = h.s.startCmd(cmd)
	wOut.Close()
	wErr.Close()
	if err != nil {
		rOut.Close()
		rErr.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, rOut: rOut, rErr: rErr}
	p.copied.Add(2)
	go p.copy(rOut, h.stdout)
	go p.copy(rErr, h.stderr)
	return p, nil
}

func (p *proc) copy(r *os.File, w *lineWriter) {
	defer p.copied.Done()
	_, _ = io.Copy(w, r)
}

// drain waits for the output of an ended run, at most waitDelay, then
// closes the pipes.
func (p *proc) drain() {
	done := make(chan struct{})
	go func() { p.copied.Wait(); close(done) }()
	t := time.NewTimer(waitDelay)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	p.rOut.Close()
	p.rErr.Close()
	<-done
}

func (h *Handle) flush() {
	if h.stdout != nil {
		h.stdout.flush()
		h.stderr.flush()
	}
}

// started records a new run and begins its readiness check.
func (h *Handle) started(p *proc) {
	pid := p.cmd.Process.Pid
	var gen int
	h.update(func(st *ProcessStatus) {
		h.gen++
		gen = h.gen
		h.readyErr = nil
		st.PID = pid
		st.State = StateRunning
		st.StartedAt = time.Now()
		st.Ready = h.spec.Ready == nil
	})
	h.event(EventStarted, pid, nil)
	if h.spec.Ready != nil {
		h.s.wg.Add(1)
		go h.checkReady(gen, pid)
	}
}

// checkReady polls the readiness check of run gen until it passes, times
// out, or a newer run or an exit makes it moot.
func (h *Handle) checkReady(gen, pid int) {
	defer h.s.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), h.spec.ReadyTimeout)
	defer cancel()
	current := func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.gen == gen && h.st.State == StateRunning
	}
	tick := time.NewTicker(h.s.opts.ReadyInterval)
	defer tick.Stop()
	for {
		err := h.spec.Ready(ctx)
		if !current() {
			return
		}
		if err == nil {
			h.update(func(st *ProcessStatus) {
				if h.gen == gen {
					st.Ready = true
				}
			})
			h.event(EventReady, pid, nil)
			return
		}
		select {
		case <-tick.C:
			continue
		case <-h.stopCh:
			return
		case <-ctx.Done():
		}
		if !current() {
			return
		}
		rerr := fmt.Errorf("%s not ready after %s: %w", h.spec.Name, h.spec.ReadyTimeout, err)
		h.update(func(st *ProcessStatus) {
			if h.gen == gen {
				h.readyErr = rerr
			}
		})
		h.logf("not ready after %s: %v", h.spec.ReadyTimeout, err)
		h.event(EventNotReady, pid, func(ev *Event) { ev.Err = rerr })
		return
	}
}

// run watches the process through its runs until it is finished for good.
// p is the already started first run.
func (h *Handle) run(p *proc) {
	defer h.s.wg.Done()
	defer close(h.done)
	opts := h.s.opts
	backoff := opts.BackoffMin
	var startErr error // why the last restart could not start
	for {
		exitErr := startErr
		startErr = nil
		var uptime time.Duration
		stopped := false
		pid := 0
		ran := p != nil
		if ran {
			pid = p.cmd.Process.Pid
			begin := time.Now()
			exitErr, stopped = h.watch(p.cmd)
			uptime = time.Since(begin)
			// Whatever the process left behind in its group goes with it.
			signalGroup(pid, syscall.SIGKILL)
			p.drain()
			h.flush()
		}
		exit := exitString(exitErr)
		now := time.Now()
		h.update(func(st *ProcessStatus) {
			st.PID = 0
			st.Ready = false
			if ran {
				st.LastExit = exit
				st.LastExitAt = now
			}
		})
		if stopped || h.stopping() {
			h.update(func(st *ProcessStatus) { st.State = StateStopped })
			h.event(EventStopped, pid, func(ev *Event) { ev.Exit = exit })
			return
		}
		if ran {
			h.event(EventExited, pid, func(ev *Event) { ev.Exit = exit })
		}
		restart := h.spec.Restart == RestartAlways || (h.spec.Restart == RestartOnFailure && failed(exitErr))
		if !restart {
			h.logf("exited (%s); restart policy %s, not restarting", exit, h.spec.Restart)
			h.update(func(st *ProcessStatus) { st.State = StateExited })
			return
		}
		if uptime >= opts.BackoffReset {
			backoff = opts.BackoffMin
		}
		delay := backoff
		backoff = min(backoff*2, opts.BackoffMax)
		h.update(func(st *ProcessStatus) { st.State = StateBackoff })
		if ran {
			h.logf("exited (%s); restarting in %s", exit, delay)
		}
		h.event(EventRestarting, pid, func(ev *Event) { ev.Delay = delay; ev.Exit = exit })
		p = nil
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-h.stopCh:
			t.Stop()
			h.update(func(st *ProcessStatus) { st.State = StateStopped })
			h.event(EventStopped, 0, func(ev *Event) { ev.Exit = exit })
			return
		}
		h.update(func(st *ProcessStatus) { st.Restarts++ })
		next, err := h.start()
		if err != nil {
			serr := fmt.Errorf("restarting %s: %w", h.spec.Name, err)
			h.logf("%v; retrying in %s", serr, backoff)
			h.update(func(st *ProcessStatus) { st.LastExit = serr.Error(); st.LastExitAt = time.Now() })
			h.event(EventExited, 0, func(ev *Event) { ev.Err = serr; ev.Exit = serr.Error() })
			startErr = serr
			continue
		}
		p = next
		h.started(p)
	}
}

func (h *Handle) stopping() bool {
	select {
	case <-h.stopCh:
		return true
	default:
		return false
	}
}

// watch waits for cmd to exit, handling stop and kill requests meanwhile.
// It reports the exit and whether the exit was asked for.
func (h *Handle) watch(cmd *exec.Cmd) (error, bool) {
	pid := cmd.Process.Pid
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()
	stopCh, killCh := h.stopCh, h.killCh
	var grace <-chan time.Time
	stopped := false
	for {
		select {
		case err := <-waitCh:
			return err, stopped
		case <-stopCh:
			stopCh, stopped = nil, true
			h.update(func(st *ProcessStatus) { st.State = StateStopping })
			signalGroup(pid, syscall.SIGTERM)
			t := time.NewTimer(h.s.opts.StopGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			grace = nil
			h.logf("still running %s after SIGTERM; sending SIGKILL", h.s.opts.StopGrace)
			signalGroup(pid, syscall.SIGKILL)
		case <-killCh:
			killCh, stopCh, stopped = nil, nil, true
			signalGroup(pid, syscall.SIGKILL)
		}
	}
}

var readyClient = &http.Client{
	// Readiness checks go straight to loopback, never through a proxy.
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	Timeout:   2 * time.Second,
}

func newGet(ctx context.Context, url string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("readiness check: %w", err)
	}
	return req, nil
}
