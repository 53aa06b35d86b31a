package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one worker process; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// fleet runs `airlock worker` processes as operators run them: the built
// binary, configured by the environment only.
type fleet struct {
	t     *testing.T
	dir   string
	extra []string // more environment

	mu      sync.Mutex
	procs   []*proc
	starts  int
	kills   int
	stopped bool
}

func newFleet(t *testing.T, n int, extra ...string) *fleet {
	dir, err := os.MkdirTemp("", "airlock-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, dir: dir, extra: extra, procs: make([]*proc, n)}
	// The workers' logs stay for a failed test to be read.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	for i := range n {
		f.start(i)
	}
	// Whatever happens to the test, no worker outlives it.
	t.Cleanup(f.stop)
	return f
}

func (f *fleet) env() []string {
	s := env.stack
	e := append(os.Environ(),
		"TEMPORAL_ADDRESS="+s.TemporalAddress,
		"VAULT_ADDR="+s.VaultAddr,
		"VAULT_TOKEN="+s.VaultToken,
		"KUBECONFIG="+s.Kubeconfig,
		"AIRLOCK_CATALOG="+env.catPath,
		"AIRLOCK_JOB_VAULT_ADDR=http://vault.example:8200",
		"AIRLOCK_METRICS_ADDR=off",
	)
	return append(e, f.extra...)
}

// start (re)starts worker i; callers hold no lock.
func (f *fleet) start(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	logPath := filepath.Join(f.dir, fmt.Sprintf("worker-%d.log", i))
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		f.t.Errorf("worker log: %v", err)
		return
	}
	cmd := exec.Command(env.bin, "worker")
	cmd.Env = f.env()
	cmd.Stdout, cmd.Stderr = log, log
	// If the test binary dies, its workers die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.t.Errorf("start worker %d: %v", i, err)
		log.Close()
		return
	}
	f.starts++
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(p.done) }()
	f.procs[i] = p
}

// kill SIGKILLs worker i: no shutdown, no cleanup, as a node failure would.
func (f *fleet) kill(i int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.procs[i]
	if p == nil {
		return false
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return false
	}
	f.kills++
	f.procs[i] = nil
	return true
}

func (f *fleet) stop() {
	f.mu.Lock()
	f.stopped = true
	procs := f.procs
	f.mu.Unlock()
	for _, p := range procs {
		if p != nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// logs concatenates every worker's log.
func (f *fleet) logs() string {
	var all []byte
	matches, _ := filepath.Glob(filepath.Join(f.dir, "worker-*.log"))
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		all = append(all, b...)
	}
	return string(all)
}

// usage reads worker i's CPU time (user + system) and resident memory from
// /proc; zero values when it is not running.
func (f *fleet) usage(i int) (cpu time.Duration, rssBytes int64) {
	f.mu.Lock()
	p := f.procs[i]
	f.mu.Unlock()
	if p == nil {
		return 0, 0
	}
	pid := p.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces) in ")".
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if len(fields) > 12 {
			ut, _ := strconv.ParseInt(fields[11], 10, 64)
			st, _ := strconv.ParseInt(fields[12], 10, 64)
			cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rssBytes = kb << 10
			}
		}
	}
	return cpu, rssBytes
}
