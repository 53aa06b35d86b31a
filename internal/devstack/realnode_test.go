package devstack_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/internal/devstack"
)

// requireRealNode skips when this machine cannot run a real node, except
// in CI, whose .ci/run installs everything a real node needs: there a
// missing package is a failure, not a reason to test less.
func requireRealNode(t *testing.T) {
	t.Helper()
	if err := devstack.RealNodeSupported(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the real node: %v", err)
		}
		t.Skipf("no real node here: %v", err)
	}
}

// hostState is what a real node may change on the host, as a user of the
// machine would see it afterwards.
type hostState struct {
	Sysctls  map[string]string
	Iptables string
	Ipsets   string
	Links    string
	Paths    map[string]bool
	Kubepods []string
	Mounts   int
}

func readHostState(t *testing.T) hostState {
	t.Helper()
	st, err := hostStateNow()
	require.NoError(t, err)
	return st
}

func hostStateNow() (hostState, error) {
	st := hostState{Sysctls: map[string]string{}, Paths: map[string]bool{}}
	for _, name := range []string{"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops", "net.ipv4.ip_forward"} {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
		if err != nil {
			return st, err
		}
		st.Sysctls[name] = strings.TrimSpace(string(b))
	}
	run := func(name string, args ...string) (string, error) {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			return "", fmt.Errorf("%s %v: %w", name, args, err)
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			// Generation comments carry times; counters change by themselves.
			if l != "" && !strings.HasPrefix(l, "#") {
				if strings.HasPrefix(l, ":") {
					l, _, _ = strings.Cut(l, " [")
				}
				lines = append(lines, l)
			}
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n"), nil
	}
	var err error
	var v4, v6 string
	if v4, err = run("iptables-save"); err != nil {
		return st, err
	}
	if v6, err = run("ip6tables-save"); err != nil {
		return st, err
	}
	st.Iptables = v4 + "\n" + v6
	if st.Ipsets, err = run("ipset", "list", "-n"); err != nil {
		return st, err
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return st, err
	}
	for _, i := range ifaces {
		st.Links += i.Name + " "
	}
	for _, p := range []string{"/var/log/pods", "/var/lib/kubelet", "/var/lib/cni", "/run/containerd"} {
		_, err := os.Lstat(p)
		st.Paths[p] = err == nil
	}
	st.Kubepods, _ = filepath.Glob("/sys/fs/cgroup/*/kubepods")
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return st, err
	}
	st.Mounts = strings.Count(string(b), "\n")
	return st, nil
}

// startRealNode starts a real node and returns it with the host as it was
// just before the node changed it (another test package's node may run
// until then).
func startRealNode(ctx context.Context, t *testing.T, opts devstack.Options) (*devstack.Stack, hostState) {
	t.Helper()
	var before hostState
	var beforeErr error
	opts.Kube, opts.RealNode = true, true
	s, err := devstack.Start(ctx, devstack.WithHostReady(opts, func() { before, beforeErr = hostStateNow() }))
	require.NoError(t, err)
	require.NoError(t, beforeErr)
	return s, before
}

// A real node runs a restricted Pod's container for real — its output is
// in `kubectl logs` — and leaves the host exactly as it found it: sysctls,
// iptables, ipsets, links, paths, cgroups, mounts, and no process left.
func TestRealNode(t *testing.T) {
	requireRealNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, before := startRealNode(ctx, t, devstack.Options{Logf: t.Logf})
	stopped := false
	defer func() {
		if !stopped {
			_ = s.Stop()
		}
	}()
	for name, took := range s.StartTimes() {
		t.Logf("%-24s ready after %s", name, took)
	}
	require.Regexp(t, `^airlock\.local/busybox@sha256:[0-9a-f]{64}$`, s.BusyboxImage)
	assert.Equal(t, devstack.RealNodeName, s.NodeName)

	cs, err := kubernetes.NewForConfig(s.RestConfig)
	require.NoError(t, err)
	ns := restrictedNamespace(t, cs)
	job := jobFor(ns, "real", nil)
	c := &job.Spec.Template.Spec.Containers[0]
	c.Image = s.BusyboxImage
	c.ImagePullPolicy = corev1.PullNever
	c.Command = []string{"sh", "-c", "echo hello from a real container; id -u; sleep 30"}
	job, err = cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err)

	// The container really runs: its process is on this host, and the
	// apiserver streams its output from the kubelet.
	var pod corev1.Pod
	require.Eventually(t, func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job.Name})
		if err != nil || len(pods.Items) != 1 {
			return false
		}
		pod = pods.Items[0]
		st := pod.Status.ContainerStatuses
		return len(st) == 1 && st[0].State.Running != nil
	}, time.Minute, 100*time.Millisecond, "pod never ran")
	pids, err := devstack.ContainerPIDs(pod.Status.ContainerStatuses[0].ContainerID)
	require.NoError(t, err)
	require.NotEmpty(t, pids, "no process in the container's cgroup")
	var logs string
	require.Eventually(t, func() bool {
		rc, err := cs.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).Stream(ctx)
		if err != nil {
			return false
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		logs = string(b)
		return strings.Contains(logs, "65532")
	}, 30*time.Second, 100*time.Millisecond, "logs: %q", logs)
	assert.Equal(t, "hello from a real container\n65532\n", logs)

	// Stopping with the container still running must kill it too.
	stopped = true
	require.NoError(t, s.Stop())
	for _, pid := range pids {
		assert.False(t, devstack.ProcessAlive(pid), "container process %d survived Stop", pid)
	}
	after := readHostState(t)
	assert.Equal(t, before, after, "the host differs after the real node stopped")
	assert.NoDirExists(t, "/run/airlock-realnode", "the node's own record outlived it")
}

// killedRunEnv makes the test binary the run that
// TestRealNodeCleansUpAfterAKilledRun kills; its value is the stack's Dir.
const killedRunEnv = "DEVSTACK_KILLED_RUN_DIR"

// A run killed with SIGKILL cannot tear its node down: containerd's shims
// and the containers outlive it. The next real node finds what it left,
// kills those processes and restores the host before it starts.
func TestRealNodeCleansUpAfterAKilledRun(t *testing.T) {
	requireRealNode(t)
	if dir := os.Getenv(killedRunEnv); dir != "" {
		runUntilKilled(t, dir)
		return
	}

	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestRealNodeCleansUpAfterAKilledRun$", "-test.v")
	child.Env = append(os.Environ(), killedRunEnv+"="+dir)
	out, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = child.Stdout
	require.NoError(t, child.Start())
	var pids []int
	var transcript strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		transcript.WriteString(sc.Text() + "\n")
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "CONTAINER PIDS "); ok {
			for _, f := range strings.Fields(rest) {
				pid, err := strconv.Atoi(f)
				require.NoError(t, err)
				pids = append(pids, pid)
			}
			break
		}
	}
	require.NotEmpty(t, pids, "the child never ran its container:\n%s", transcript.String())
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	go func() { _, _ = io.Copy(io.Discard, out) }()
	// The killed run's lock is free now: another real node waiting for
	// the machine (another test package) may be the one that cleans up.
	// Either way the processes must go and the host must be restored.
	for _, pid := range pids {
		if !devstack.ProcessAlive(pid) {
			t.Logf("container process %d already gone: another real node cleaned up first", pid)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Options{Kube: true, RealNode: true, Logf: t.Logf})
	require.NoError(t, err)
	for _, pid := range pids {
		assert.False(t, devstack.ProcessAlive(pid), "container process %d of the killed run survived", pid)
	}
	require.NoError(t, s.Stop())
	assert.NoDirExists(t, filepath.Join(dir, "node"))
	// As the killed run found the host.
	b, err := os.ReadFile(filepath.Join(dir, "before.json"))
	require.NoError(t, err)
	var before hostState
	require.NoError(t, json.Unmarshal(b, &before))
	assert.Equal(t, before, readHostState(t), "the host differs after the cleanup")
	assert.NoDirExists(t, "/run/airlock-realnode", "the node's own record outlived it")
}

// runUntilKilled starts a real node in dir, runs a container, prints its
// PIDs and waits to be killed.
func runUntilKilled(t *testing.T, dir string) {
	ctx := t.Context()
	s, before := startRealNode(ctx, t, devstack.Options{Dir: dir})
	b, err := json.Marshal(before)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "before.json"), b, 0o600))
	cs, err := kubernetes.NewForConfig(s.RestConfig)
	require.NoError(t, err)
	ns := restrictedNamespace(t, cs)
	job := jobFor(ns, "orphan", nil)
	c := &job.Spec.Template.Spec.Containers[0]
	c.Image, c.Command = s.BusyboxImage, []string{"sleep", "600"}
	_, err = cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	require.NoError(t, err)
	var pids []int
	require.Eventually(t, func() bool {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) != 1 || len(pods.Items[0].Status.ContainerStatuses) != 1 {
			return false
		}
		pids, _ = devstack.ContainerPIDs(pods.Items[0].Status.ContainerStatuses[0].ContainerID)
		return len(pids) > 0
	}, time.Minute, 50*time.Millisecond)
	fmt.Printf("CONTAINER PIDS %s\n", strings.Trim(fmt.Sprint(pids), "[]"))
	<-ctx.Done() // killed long before
}
