package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one server binary: how to run it and how to tell it is ready.
// It can be stopped and started again with the same arguments.
type process struct {
	name    string
	path    string
	args    []string
	dir     string
	env     []string
	logPath string
	// ready returns nil once the server serves; it is polled until it does.
	ready   func(ctx context.Context) error
	timeout time.Duration // for ready
	grace   time.Duration // between SIGTERM and SIGKILL

	// logf reports a process that exits without being asked to.
	logf func(format string, args ...any)

	mu       sync.Mutex
	cmd      *exec.Cmd     // nil once stopped
	exited   chan struct{} // closed once cmd has been waited for
	werr     error         // cmd.Wait's result, set before exited is closed
	stopping bool          // stop was called for cmd
	final    bool          // the stack is stopping; never start again
	logStart int64         // where the latest run's lines begin in the log
}

// portTakenError is a start-up that failed because another program bound
// one of the server's ports between the moment it was picked and the
// moment the server bound it: the same server may start on other ports.
type portTakenError struct{ err error }

func (e *portTakenError) Error() string { return e.err.Error() }
func (e *portTakenError) Unwrap() error { return e.err }

// portTaken reports whether the log from offset on says a listener could
// not bind ("bind: address already in use"; PostgreSQL: "Address already
// in use").
func portTaken(logPath string, offset int64) bool {
	f, err := os.Open(logPath)
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<20))
	if err != nil {
		return false
	}
	return strings.Contains(strings.ToLower(string(b)), "address already in use")
}

// start runs the binary and waits until ready passes. On failure the process
// is killed and the error ends with the tail of its log; it is a
// *portTakenError when this run's log says a port was taken.
func (p *process) start(ctx context.Context) (err error) {
	exited, err := p.spawn()
	if err != nil {
		return err
	}
	defer func() {
		p.mu.Lock()
		from := p.logStart
		p.mu.Unlock()
		if err != nil && portTaken(p.logPath, from) {
			err = &portTakenError{err}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	var lastErr error
	for {
		if lastErr = p.ready(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			p.mu.Lock()
			werr := p.werr
			p.mu.Unlock()
			return fmt.Errorf("start %s: exited during start-up (%v)%s", p.name, werr, p.logTail())
		case <-ctx.Done():
			p.stop()
			return fmt.Errorf("start %s: not ready: %w (last check: %v)%s", p.name, context.Cause(ctx), lastErr, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *process) spawn() (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.final {
		return nil, fmt.Errorf("start %s: stack is stopped", p.name)
	}
	if p.runningLocked() {
		return nil, fmt.Errorf("start %s: already running", p.name)
	}
	// Append: a restarted process keeps the log of its earlier run.
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	if info, err := log.Stat(); err == nil {
		p.logStart = info.Size()
	}
	fmt.Fprintf(log, "=== devstack %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.path, strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: signals to the test binary's group (Ctrl-C)
		// do not reach the servers before Stop can order the shutdown.
		Setpgid: true,
		// Die with the parent, even when it is SIGKILLed or a test times out.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.stopping = cmd, exited, false
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.werr = err
		expected := p.stopping || p.cmd != cmd
		p.mu.Unlock()
		close(exited)
		if !expected && p.logf != nil {
			p.logf("devstack: %s exited unexpectedly (%v); log: %s", p.name, err, p.logPath)
		}
	}()
	return exited, nil
}

// stop sends SIGTERM to the process group, SIGKILL after the grace period,
// and waits until the process has exited.
func (p *process) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.stopping = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited: // crashed earlier; its pid may belong to someone else now
	default:
		pgid := cmd.Process.Pid // Setpgid makes the pid the group id
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(p.grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
	}
	p.mu.Lock()
	if p.cmd == cmd {
		p.cmd = nil
	}
	p.mu.Unlock()
}

// shutdown stops the process for good.
func (p *process) shutdown() {
	p.mu.Lock()
	p.final = true
	p.mu.Unlock()
	p.stop()
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *process) runningLocked() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// pid is the process id while the process runs, else 0.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

// logTail returns the end of the log, formatted to append to an error.
func (p *process) logTail() string {
	tail, err := readTail(p.logPath, 4096, 30)
	if err != nil || tail == "" {
		return ""
	}
	return fmt.Sprintf("\n--- last lines of %s.log:\n%s", p.name, tail)
}

// readTail returns at most the last maxLines lines of the last maxBytes of a file.
func readTail(path string, maxBytes int64, maxLines int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := max(info.Size()-maxBytes, 0)
	b := make([]byte, info.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first line is probably cut
	}
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n"), nil
}
