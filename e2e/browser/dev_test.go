// Package browser tests `airlock dev` as a new user meets it: the built
// binary, its printed instructions, and the Temporal Web UI in a real
// (headless) browser. Nothing here imports the stack: the binary starts it.
package browser

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// airlockBin is the binary under test, built once by TestMain.
var airlockBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "airlock-browser-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	airlockBin = filepath.Join(dir, "airlock")
	build := exec.Command("go", "build", "-o", airlockBin, "./cmd/airlock")
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build airlock:", err)
		return 1
	}
	return m.Run()
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

// devRun is a running `airlock dev`.
type devRun struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	more chan struct{} // closed and replaced on every output line
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done
	// procs are the process's descendants seen while the stack was up.
	procs []proc
}

// startDev runs the built binary from the repository root (it reads
// deploy/catalog.yaml and examples/). A free UI port keeps it clear of
// anything else on the machine. It is killed at cleanup if still running.
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	d := &devRun{more: make(chan struct{}), done: make(chan struct{})}
	d.cmd = exec.Command(airlockBin, append([]string{"dev", "--ui-port", "0"}, args...)...)
	d.cmd.Dir = repoRoot()
	stdout, err := d.cmd.StdoutPipe()
	require.NoError(t, err)
	d.cmd.Stderr = d.cmd.Stdout
	require.NoError(t, d.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			close(d.more)
			d.more = make(chan struct{})
			d.mu.Unlock()
		}
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("airlock dev output:\n%s", d.output())
		}
	})
	return d
}

func (d *devRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// waitFor waits until the output matches re and returns the submatches.
func (d *devRun) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		m, more := re.FindStringSubmatch(d.out.String()), d.more
		d.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-more:
		case <-d.done:
			if m := re.FindStringSubmatch(d.output()); m != nil {
				return m
			}
			t.Fatalf("airlock dev exited (%v) before printing %s", d.err, re)
		case <-deadline:
			t.Fatalf("airlock dev printed no %s within %s", re, timeout)
		}
	}
}

// wait waits for the process to exit and returns its exit code.
func (d *devRun) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Fatalf("airlock dev still running after %s", timeout)
	}
	return d.cmd.ProcessState.ExitCode()
}

// snapshot records the process's descendants: the servers of the stack.
func (d *devRun) snapshot(t *testing.T) {
	t.Helper()
	d.procs = descendants(d.cmd.Process.Pid)
	require.NotEmpty(t, d.procs, "airlock dev runs its servers as child processes")
}

// assertCleanExit checks that nothing airlock dev started outlives it and
// that the stack's directory is gone.
func (d *devRun) assertCleanExit(t *testing.T, stackDir string) {
	t.Helper()
	for _, p := range d.procs {
		assert.False(t, p.alive(), "process %d (%s) outlived airlock dev", p.pid, p.name)
	}
	assert.Empty(t, processesMentioning(stackDir), "processes still use the stack's directory %s", stackDir)
	_, err := os.Stat(stackDir)
	assert.True(t, os.IsNotExist(err), "the stack's directory %s is removed: %v", stackDir, err)
}

// proc identifies a process across pid reuse by its start time.
type proc struct {
	pid   int
	start string
	name  string
}

// stat reads a process's parent, start time and name from /proc.
func stat(pid int) (ppid int, start, name string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", "", false
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, "", "", false
	}
	f := strings.Fields(s[closing+1:]) // state ppid … starttime is field 22 of the whole line
	if len(f) < 20 {
		return 0, "", "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[19], s[open+1 : closing], true
}

func (p proc) alive() bool {
	_, start, _, ok := stat(p.pid)
	return ok && start == p.start
}

func descendants(root int) []proc {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, start, name, ok := stat(pid); ok {
			children[ppid] = append(children[ppid], proc{pid: pid, start: start, name: name})
		}
	}
	var out []proc
	queue := []int{root}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
		queue = queue[1:]
	}
	return out
}

func processesMentioning(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

var (
	reStackUp       = regexp.MustCompile(`stack up in`)
	reStackDir      = regexp.MustCompile(`worker log\s+(\S+)/worker\.log`)
	reUI            = regexp.MustCompile(`Temporal UI\s+(http://127\.0\.0\.1:\d+)\n`)
	reCodec         = regexp.MustCompile(`Codec server\s+(http://127\.0\.0\.1:\d+)\s.*allows (http://127\.0\.0\.1:\d+) and (http://localhost:\d+)`)
	reSecret        = regexp.MustCompile(`export SLACK_SIGNING_SECRET=(dev-[0-9a-f]+)`)
	reClick         = regexp.MustCompile(`(?m)^    (BODY='[^']+')\n    (TS=.*)\n    (curl -sS -X POST 'http://127\.0\.0\.1:\d+/slack/interactions' .*)$`)
	reAdvisor       = regexp.MustCompile(`advisory: .* cycle (cycle/advisor/dev-\d+)`)
	reSample        = regexp.MustCompile(`autonomous: .* cycle (cycle/sample/dev-\d+)`)
	regexpStackIsUp = regexp.MustCompile(`stack is up; try:`)
	reExitClick     = regexp.MustCompile(`clicked Approve as (U\w+): approved`)
)

// CI's smoke test: `airlock dev --exit` brings the whole stack up, runs the
// sample cycles (the advisory one approved by the same signed Slack click it
// prints), stops everything and exits 0, leaving no process behind.
func TestDevExit(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	d := startDev(t, "--exit")
	dir := d.waitFor(t, reStackDir, 3*time.Minute)[1]
	d.snapshot(t)
	require.Zero(t, d.wait(t, 4*time.Minute), "airlock dev --exit exits 0")
	out := d.output()

	ui := reUI.FindStringSubmatch(out)
	require.NotNil(t, ui, "prints the Temporal UI's URL")
	codec := reCodec.FindStringSubmatch(out)
	require.NotNil(t, codec, "prints the codec server and the origins it allows")
	assert.Equal(t, ui[1], codec[2], "the codec server allows the UI's origin as printed")
	assert.Equal(t, strings.Replace(ui[1], "127.0.0.1", "localhost", 1), codec[3])
	assert.Regexp(t, reSecret, out, "prints the dev signing secret")
	assert.Regexp(t, reClick, out, "prints a ready-to-run signed click")
	assert.Regexp(t, reExitClick, out, "--exit approves with that click")
	adv := reAdvisor.FindStringSubmatch(out)
	require.NotNil(t, adv)
	assert.Contains(t, out, "cycle "+adv[1]+": succeeded", "the approved write ran")
	d.assertCleanExit(t, dir)
}

// clickCommand is the printed click, ready for sh.
func clickCommand(t *testing.T, out string) string {
	t.Helper()
	m := reClick.FindStringSubmatch(out)
	require.NotNil(t, m, "a printed signed click")
	return strings.Join(m[1:], "\n")
}

// interrupt stops airlock dev as Ctrl-C does.
func (d *devRun) interrupt(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGINT))
}
