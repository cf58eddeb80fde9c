package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux the harness runs on.
const clockTicks = 100

// proc is a process the harness started and measures: a proxy, a backend
// or the load generator.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
	// admin is a Weft sidecar's admin API address, "" for other
	// proxies: its threads are read from there after each window.
	admin string
}

// startProc runs argv with its output in logDir/<name>.log, in its own
// process group so the harness can stop it with its children.
func startProc(logDir, name string, env []string, argv ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace
// period.
func (p *proc) stop() {
	if p == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	p.log.Close()
}

// tail returns the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// tree lists pid and its descendants (nginx and HAProxy fork workers).
func tree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(n)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], n)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

type stat struct {
	ppid      int
	user, sys uint64 // utime, stime
}

func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return stat{}, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	stt, _ := strconv.ParseUint(f[12], 10, 64)
	return stat{ppid: ppid, user: ut, sys: stt}, nil
}

// cpuTime is CPU time in seconds: in all, and the part of it in the
// kernel (system time).
type cpuTime struct{ total, sys float64 }

func (a cpuTime) sub(b cpuTime) cpuTime { return cpuTime{a.total - b.total, a.sys - b.sys} }

// cpuSeconds is the CPU time used so far by pid and its descendants that
// are alive.
func cpuSeconds(pid int) cpuTime {
	var user, sys uint64
	for _, p := range tree(pid) {
		if st, err := readStat(p); err == nil {
			user += st.user
			sys += st.sys
		}
	}
	return cpuTime{total: float64(user+sys) / clockTicks, sys: float64(sys) / clockTicks}
}

// peakRSSMB is the peak resident set (VmHWM) of pid and its descendants,
// summed, in MB (10^6 bytes).
func peakRSSMB(pid int) float64 {
	var kb uint64
	for _, p := range tree(pid) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				kb += n
			}
		}
		f.Close()
	}
	return float64(kb) * 1024 / 1e6
}

// cpuMeter reads the CPU time of a set of processes before and after a
// window.
type cpuMeter struct {
	mu     sync.Mutex
	before map[string]cpuTime
}

func (m *cpuMeter) start(procs []*proc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.before = map[string]cpuTime{}
	for _, p := range procs {
		m.before[p.name] = cpuSeconds(p.cmd.Process.Pid)
	}
}

func (m *cpuMeter) stop(procs []*proc) map[string]cpuTime {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]cpuTime{}
	for _, p := range procs {
		out[p.name] = cpuSeconds(p.cmd.Process.Pid).sub(m.before[p.name])
	}
	return out
}
