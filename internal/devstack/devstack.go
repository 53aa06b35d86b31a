// Package devstack starts the real development and test servers — Temporal,
// Vault and a Kubernetes control plane whose only node is simulated by kwok —
// as child processes of the calling program.
//
// The binaries are built from pinned Go modules by tools/build.sh; nothing is
// downloaded at run time. Every server listens on a free loopback port, keeps
// its data, certificates and log under one directory, and dies with its parent
// (Pdeathsig), so a crashed test run leaves nothing behind.
//
// Pods run no containers: kwok moves every Pod scheduled to its node to
// Running, and a Job's Pod on to Succeeded with the termination message taken
// from the annotation AnnotationResult. AnnotationFail and
// AnnotationDurationMS make it fail or take longer. Test packages start a
// stack once per binary with Main from TestMain.
//
// Options.RealNode replaces kwok with a real node whose Pods run real
// containers (realnode.go); it needs root on Linux.
package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// Options says which servers Start runs and where.
type Options struct {
	// BinDir holds the server binaries.
	// Default: $AIRLOCK_BIN_DIR, else $AIRLOCK_CACHE/bin, else <os.UserCacheDir>/airlock/bin
	// (the directory tools/build.sh links its binaries into).
	BinDir string
	// Dir holds data, certificates, logs (<Dir>/<process>.log) and the kubeconfig.
	// Default: a new temporary directory, removed by Stop unless KeepDir.
	Dir string
	// KeepDir keeps Dir after Stop, e.g. to read the logs of a failed run.
	KeepDir bool

	// Temporal, Vault and Kube choose the parts to start.
	Temporal, Vault, Kube bool

	// VaultPersistent runs Vault as a real server (file storage, initialised
	// with one unseal key, KV v2 at secret/) instead of dev mode, so a
	// restart keeps its tokens, leases and keys. StartProcess unseals it.
	VaultPersistent bool

	// RealNode replaces the kwok node with a real one (containerd, kubelet,
	// CNI bridge, kube-router's NetworkPolicy firewall): Jobs run real
	// containers. Needs root on Linux and the Debian packages
	// RealNodeSupported names; Stop restores the host (realnode.go).
	RealNode bool

	// SearchAttributes are registered in Temporal as "Name=Type".
	// Default: AirlockAgent, AirlockPhase, AirlockOutcome, AirlockRisk, all Keyword.
	SearchAttributes []string
	// TemporalUIPort is the Temporal Web UI port. Default: 0, a free port.
	TemporalUIPort int
	// TemporalUICodecEndpoint, if set, is the remote codec server the Web UI
	// decodes payloads with (start-dev --ui-codec-endpoint), so a browser
	// opening the UI sees cleartext with no manual setting. Default: none.
	TemporalUICodecEndpoint string

	// Logf receives progress lines. Default: discard.
	Logf func(format string, args ...any)

	// hostReady runs once a real node holds the machine's lock and has
	// cleaned up after an earlier one, before it changes anything: tests
	// read the host there to compare with after Stop.
	hostReady func()

	// pickPorts returns n distinct free loopback ports. Default: freePorts.
	// Tests replace it to hand out a port that is taken.
	pickPorts func(n int) ([]int, error)
}

// DefaultSearchAttributes are registered when Options.SearchAttributes is empty.
var DefaultSearchAttributes = []string{
	"AirlockAgent=Keyword",
	"AirlockPhase=Keyword",
	"AirlockOutcome=Keyword",
	"AirlockRisk=Keyword",
}

// Process names, for StopProcess, StartProcess and Restart.
const (
	ProcTemporal              = "temporal"
	ProcVault                 = "vault"
	ProcEtcd                  = "etcd"
	ProcKubeAPIServer         = "kube-apiserver"
	ProcKubeControllerManager = "kube-controller-manager"
	ProcKubeScheduler         = "kube-scheduler"
	ProcKwok                  = "kwok"
)

// stopGroups says in which order Stop stops processes: the groups at once,
// each group in order. Kubernetes stops in reverse start order, etcd last, so
// no component loses its store while it shuts down.
var stopGroups = [][]string{
	{ProcTemporal},
	{ProcVault},
	{ProcKwok, ProcKubeRouter, ProcKubelet, ProcContainerd, ProcKubeScheduler, ProcKubeControllerManager, ProcKubeAPIServer, ProcEtcd},
}

// Stack is a running set of servers. Its fields are fixed for its lifetime:
// Restart keeps ports, tokens and data directories.
type Stack struct {
	Dir string

	TemporalAddress string // host:port of the gRPC frontend
	TemporalUIURL   string // http://127.0.0.1:port

	VaultAddr  string // http://127.0.0.1:port
	VaultToken string // root token, random per Start
	// vaultUnsealKey unseals a persistent Vault (Options.VaultPersistent).
	vaultUnsealKey string

	// VaultAuditLog is Vault's file audit device (JSON lines), and
	// KubeAuditLog the apiserver's audit log (audit.k8s.io/v1 JSON lines).
	VaultAuditLog, KubeAuditLog string

	Kubeconfig string // admin kubeconfig (client certificate, group system:masters)
	RestConfig *rest.Config
	NodeName   string // the node Pods are scheduled to (kwok's, or the real one)

	// PodHostIP is this host's address on the real node's Pod network,
	// the one address Pods can reach (see ExposeToPods). Real node only.
	PodHostIP string
	// BusyboxImage is busybox-static imported into the real node,
	// pinned by digest (name@sha256:…). Real node only.
	BusyboxImage string
	node         *realNode // nil unless Options.RealNode

	opts  Options
	logf  func(format string, args ...any)
	owned bool // Dir was created by Start

	mu         sync.Mutex
	procs      map[string]*process
	startTimes map[string]time.Duration
	stopped    bool
}

// MissingBinaryError reports a server binary that has not been built.
type MissingBinaryError struct {
	Path string
}

func (e *MissingBinaryError) Error() string {
	return fmt.Sprintf("%s is missing: run `make tools` (tools/build.sh) to build it", e.Path)
}

// Start starts the servers chosen in opts and waits until each is ready.
// Temporal, Vault and the Kubernetes chain start concurrently. If anything
// fails, Start stops what it started and returns an error that ends with the
// tail of the failing process's log.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if !opts.Temporal && !opts.Vault && !opts.Kube {
		return nil, errors.New("devstack: nothing to start: set Temporal, Vault or Kube")
	}
	if opts.BinDir == "" {
		dir, err := DefaultBinDir()
		if err != nil {
			return nil, err
		}
		opts.BinDir = dir
	}
	if len(opts.SearchAttributes) == 0 {
		opts.SearchAttributes = DefaultSearchAttributes
	}
	if opts.pickPorts == nil {
		opts.pickPorts = freePorts
	}
	s := &Stack{opts: opts, logf: opts.Logf, procs: map[string]*process{}, startTimes: map[string]time.Duration{}}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	if err := checkBinaries(opts); err != nil {
		return nil, err
	}

	s.Dir = opts.Dir
	if s.Dir == "" {
		dir, err := os.MkdirTemp("", "airlock-devstack-")
		if err != nil {
			return nil, fmt.Errorf("devstack: create dir: %w", err)
		}
		s.Dir, s.owned = dir, true
	} else if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: create dir: %w", err)
	}
	s.VaultAuditLog, s.KubeAuditLog = filepath.Join(s.Dir, vaultAuditFile), filepath.Join(s.Dir, kubeAuditFile)
	// Children get their own HOME so no user configuration (~/.kwok,
	// ~/.config/temporalio, ~/.vault-token) leaks in or gets written.
	if err := os.MkdirAll(filepath.Join(s.Dir, "home"), 0o755); err != nil {
		return nil, fmt.Errorf("devstack: create dir: %w", err)
	}

	begin := time.Now()
	if err := s.startAll(ctx); err != nil {
		if stopErr := s.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	took := since(begin)
	s.mu.Lock()
	s.startTimes["total"] = took
	s.mu.Unlock()
	s.logf("devstack: all started in %s (dir %s)", took, s.Dir)
	return s, nil
}

// startAll runs the three independent chains concurrently and returns the
// first error; the others are cancelled.
func (s *Stack) startAll(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var chains []func(context.Context) error
	if s.opts.Temporal {
		chains = append(chains, s.startTemporal)
	}
	if s.opts.Vault {
		chains = append(chains, s.startVault)
	}
	if s.opts.Kube {
		chains = append(chains, s.startKube)
	}
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, chain := range chains {
		wg.Go(func() {
			if err := chain(ctx); err != nil {
				// Report the first failure, not the "context canceled" of
				// the chains it cut short.
				once.Do(func() { first = err })
				cancel(err)
			}
		})
	}
	wg.Wait()
	return first
}

// maxStartAttempts bounds how often launch starts a server, each time on
// new ports, when the ports it picked were taken before the server bound
// them.
const maxStartAttempts = 3

// launch picks nPorts free ports, has build make the process that listens
// on them, registers it and starts it, logging how long it took to get
// ready. Free ports are only bound later, by the server, so another program
// may take one first: if the server fails because a port is in use, launch
// tries again with new ports, maxStartAttempts times in all. build must set
// everything that depends on the ports (addresses in Stack, kubeconfig).
func (s *Stack) launch(ctx context.Context, nPorts int, build func(ports []int) (*process, error)) error {
	for attempt := 1; ; attempt++ {
		var ports []int
		if nPorts > 0 {
			var err error
			if ports, err = s.opts.pickPorts(nPorts); err != nil {
				return fmt.Errorf("devstack: %w", err)
			}
		}
		p, err := build(ports)
		if err != nil {
			return err
		}
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return errors.New("devstack: stack is stopped")
		}
		s.procs[p.name] = p
		s.mu.Unlock()
		begin := time.Now()
		err = p.start(ctx)
		if err == nil {
			took := since(begin)
			s.mu.Lock()
			s.startTimes[p.name] = took
			s.mu.Unlock()
			s.logf("devstack: %s ready in %s", p.name, took)
			return nil
		}
		var taken *portTakenError
		if !errors.As(err, &taken) || nPorts == 0 || ctx.Err() != nil || attempt == maxStartAttempts {
			return err
		}
		s.logf("devstack: %s: a port was taken before it bound it (ports %v); trying new ports (attempt %d of %d)",
			p.name, ports, attempt+1, maxStartAttempts)
	}
}

// StartTimes reports how long each process took from exec to ready during
// Start, and under "total" the whole Start (parts start concurrently).
func (s *Stack) StartTimes() map[string]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.startTimes)
}

// Stop stops every process: SIGTERM, then SIGKILL after a grace period.
// Temporal, Vault and Kubernetes stop concurrently; Kubernetes in reverse
// start order, etcd last. It removes Dir if Start created it and
// KeepDir is false. Stop is idempotent and safe to call concurrently.
func (s *Stack) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	begin := time.Now()
	var wg sync.WaitGroup
	for _, group := range stopGroups {
		wg.Go(func() {
			for _, name := range group {
				if p := s.procs[name]; p != nil {
					p.shutdown()
				}
			}
		})
	}
	wg.Wait()
	var nodeErr error
	if s.node != nil {
		// Before Dir goes: the node's mounts live under it.
		nodeErr = s.node.teardown(s.logf)
	}
	s.logf("devstack: stopped in %s", since(begin))
	if nodeErr != nil {
		return fmt.Errorf("devstack: restore host after real node: %w", nodeErr)
	}
	if s.owned && !s.opts.KeepDir {
		if err := os.RemoveAll(s.Dir); err != nil {
			return fmt.Errorf("devstack: remove dir: %w", err)
		}
	}
	return nil
}

// StopProcess stops one process, keeping its data and ports so StartProcess
// can bring it back — to test how clients ride out an outage.
// Vault runs in dev mode, in memory: a restarted Vault keeps its address and
// root token but not its secrets, tokens or mounts.
func (s *Stack) StopProcess(name string) error {
	p, err := s.process(name)
	if err != nil {
		return err
	}
	begin := time.Now()
	p.stop()
	s.logf("devstack: %s stopped in %s", name, since(begin))
	return nil
}

// StartProcess starts a process stopped by StopProcess again and waits until
// it is ready. Starting a running process is a no-op.
func (s *Stack) StartProcess(ctx context.Context, name string) error {
	p, err := s.process(name)
	if err != nil {
		return err
	}
	if p.running() {
		return nil
	}
	begin := time.Now()
	if err := p.start(ctx); err != nil {
		return err
	}
	s.logf("devstack: %s ready again in %s", name, since(begin))
	return nil
}

// Restart stops and starts one process; see StopProcess.
func (s *Stack) Restart(ctx context.Context, name string) error {
	if err := s.StopProcess(name); err != nil {
		return err
	}
	return s.StartProcess(ctx, name)
}

// Pid returns the process id of a running process, or 0.
func (s *Stack) Pid(name string) int {
	p, err := s.process(name)
	if err != nil {
		return 0
	}
	return p.pid()
}

// LogPath returns the path of a process's log file.
func (s *Stack) LogPath(name string) string {
	return filepath.Join(s.Dir, name+".log")
}

func (s *Stack) process(name string) (*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, errors.New("devstack: stack is stopped")
	}
	p := s.procs[name]
	if p == nil {
		return nil, fmt.Errorf("devstack: no process %q in this stack", name)
	}
	return p, nil
}

// newProcess fills in what every process shares: binary path, log file,
// working directory and a clean environment.
func (s *Stack) newProcess(name, binary string, args ...string) *process {
	return &process{
		name:    name,
		path:    filepath.Join(s.opts.BinDir, binary),
		args:    args,
		dir:     s.Dir,
		env:     childEnv(filepath.Join(s.Dir, "home")),
		logPath: s.LogPath(name),
		logf:    s.logf,
		timeout: 2 * time.Minute,
		grace:   5 * time.Second,
	}
}

// DefaultBinDir is where Start looks for binaries when Options.BinDir is empty.
func DefaultBinDir() (string, error) {
	if dir := os.Getenv("AIRLOCK_BIN_DIR"); dir != "" {
		return dir, nil
	}
	if dir := os.Getenv("AIRLOCK_CACHE"); dir != "" {
		return filepath.Join(dir, "bin"), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("devstack: find bin dir: %w", err)
	}
	return filepath.Join(cache, "airlock", "bin"), nil
}

// checkBinaries fails before anything starts if a needed binary is missing.
func checkBinaries(opts Options) error {
	var need []string
	if opts.Temporal {
		need = append(need, "temporal")
	}
	if opts.Vault {
		need = append(need, "vault")
	}
	if opts.Kube {
		need = append(need, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
		if opts.RealNode {
			need = append(need, "kubelet", "kube-router")
		} else {
			need = append(need, "kwok")
		}
	}
	var errs []error
	for _, b := range need {
		path := filepath.Join(opts.BinDir, b)
		if _, err := exec.LookPath(path); err != nil {
			errs = append(errs, &MissingBinaryError{Path: path})
		}
	}
	return errors.Join(errs...)
}

// childEnv is the parent's environment without variables that would
// reconfigure the servers (VAULT_ADDR, ETCD_*, TEMPORAL_*, KUBECONFIG), and
// with HOME pointing into the stack's directory.
func childEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "VAULT_"), strings.HasPrefix(name, "ETCD_"),
			strings.HasPrefix(name, "TEMPORAL_"), name == "KUBECONFIG", name == "HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// Another program may take one before the server binds it; the window is small.
func freePorts(n int) ([]int, error) {
	// Hold every listener until the end so the n ports differ.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

func since(t time.Time) time.Duration {
	return time.Since(t).Round(time.Millisecond)
}
