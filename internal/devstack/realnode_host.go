package devstack

// The host side of a real node: what it records before it changes the host,
// and how teardown (or the next real node, after a killed run) puts it back.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// teardown runs after every node process has stopped: it kills what they
// left, closes the relays and restores the host.
func (n *realNode) teardown(logf func(string, ...any)) error {
	n.mu.Lock()
	for _, l := range n.relays {
		l.Close()
	}
	n.relays = nil
	n.mu.Unlock()
	n.wg.Wait()
	var err error
	if b, rerr := os.ReadFile(realNodeStateFile); rerr == nil {
		var st nodeState
		if err = json.Unmarshal(b, &st); err == nil {
			err = restoreHost(st, logf)
		}
	}
	if n.lock != nil {
		if err == nil {
			// Still holding the lock: nobody else can be using the directory.
			_ = os.Remove(n.lock.Name())
			_ = os.Remove(realNodeRunDir)
		}
		n.lock.Close()
	}
	return err
}

// snapshot records the host before the node touches it.
func (n *realNode) snapshot(pid int) (nodeState, error) {
	st := nodeState{Pid: pid, Dir: n.dir, Socket: n.socket, Sysctls: map[string]string{}, Iptables: map[string]map[string][]string{}}
	for _, name := range touchedSysctls {
		if b, err := os.ReadFile(sysctlPath(name)); err == nil {
			st.Sysctls[name] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range fixedPaths {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			st.Missing = append(st.Missing, p)
		}
	}
	for _, d := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			st.Netns = append(st.Netns, filepath.Join(d, e.Name()))
		}
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		tables, err := iptablesSave(bin)
		if err != nil {
			return st, err
		}
		st.Iptables[bin] = tables
	}
	var err error
	if st.Ipsets, err = ipsetNames(); err != nil {
		return st, err
	}
	st.Cgroups = kubepodsCgroups()
	return st, nil
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// restoreHost undoes what a node did to the host, as recorded in st, and
// removes the record. It carries on past errors and returns them all.
func restoreHost(st nodeState, logf func(string, ...any)) error {
	var errs []error
	begin := time.Now()

	// 1. Every process the node left: containers (in /kubepods cgroups that
	// did not exist before) and containerd shims serving our socket.
	var pids []int
	for _, root := range kubepodsCgroups() {
		if !slices.Contains(st.Cgroups, root) {
			_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					pids = append(pids, cgroupProcs(path)...)
				}
				return nil
			})
		}
	}
	pids = append(pids, shimPIDs(st.Socket)...)
	slices.Sort(pids)
	pids = slices.Compact(pids)
	if killed := killAll(pids, 2*time.Second); killed > 0 {
		logf("devstack: real node: killed %d leftover processes", killed)
	}

	// 2. Mounts: overlay roots, shm, secret and emptyDir volumes, network
	// namespaces, deepest first.
	var prefixes []string
	prefixes = append(prefixes, st.Dir)
	for _, p := range st.Missing {
		prefixes = append(prefixes, p)
	}
	prefixes = append(prefixes, "/run/containerd", "/run/netns", "/var/run/netns")
	mounts := mountPoints()
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if !underAny(m, prefixes) {
			continue
		}
		if (strings.HasPrefix(m, "/run/netns/") || strings.HasPrefix(m, "/var/run/netns/")) && slices.Contains(st.Netns, m) {
			continue // not ours
		}
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, d := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if strings.HasPrefix(e.Name(), "cni-") && !slices.Contains(st.Netns, p) {
				_ = os.Remove(p)
			}
		}
	}

	// 3. Network: the bridge, iptables rules and chains, ipsets.
	if _, err := net.InterfaceByName(podBridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", podBridge).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", podBridge, err, out))
		}
	}
	for bin, before := range st.Iptables {
		if err := restoreIptables(bin, before); err != nil {
			errs = append(errs, err)
		}
	}
	if now, err := ipsetNames(); err == nil {
		for _, name := range now {
			if !slices.Contains(st.Ipsets, name) {
				if out, err := exec.Command("ipset", "destroy", name).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("ipset destroy %s: %w: %s", name, err, out))
				}
			}
		}
	}

	// 4. Sysctls.
	for name, want := range st.Sysctls {
		b, err := os.ReadFile(sysctlPath(name))
		if err != nil || strings.TrimSpace(string(b)) == want {
			continue
		}
		if err := os.WriteFile(sysctlPath(name), []byte(want), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s: %w", name, err))
		}
	}

	// 5. Cgroups and paths.
	for _, root := range kubepodsCgroups() {
		if !slices.Contains(st.Cgroups, root) {
			if err := removeCgroupTree(root); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range st.Missing {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	if err := os.RemoveAll(st.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", st.Dir, err))
	}
	if err := errors.Join(errs...); err != nil {
		// Keep the record: the next real node tries again.
		return err
	}
	if err := os.Remove(realNodeStateFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	logf("devstack: real node: host restored in %s", since(begin))
	return nil
}

func underAny(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if pre != "" && (p == pre || strings.HasPrefix(p, pre+"/")) {
			return true
		}
	}
	return false
}

// kubepodsCgroups lists the kubelet's /kubepods cgroup in every mounted
// hierarchy (one per controller on cgroup v1, one on v2).
func kubepodsCgroups() []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/*/kubepods"} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	slices.Sort(out)
	return out
}

func cgroupProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// shimPIDs finds the containerd shims serving the containerd at socket by
// their command line (`containerd-shim-runc-v2 ... -address <socket>`).
func shimPIDs(socket string) []int {
	if socket == "" {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		if i := slices.Index(args, "-address"); i >= 0 && i+1 < len(args) && args[i+1] == socket {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAll sends SIGTERM to pids, waits up to grace for them to exit, then
// SIGKILLs the rest and waits until they are gone. It returns how many it
// signalled.
func killAll(pids []int, grace time.Duration) int {
	var live []int
	for _, pid := range pids {
		if pid > 1 && pid != os.Getpid() && ProcessAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			live = append(live, pid)
		}
	}
	wait := func(d time.Duration) []int {
		deadline := time.Now().Add(d)
		for {
			var rest []int
			for _, pid := range live {
				if ProcessAlive(pid) {
					rest = append(rest, pid)
				}
			}
			if len(rest) == 0 || time.Now().After(deadline) {
				return rest
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rest := wait(grace)
	for _, pid := range rest {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	live = rest
	wait(10 * time.Second)
	return len(pids)
}

// mountPoints lists this mount namespace's mount points.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroupTree removes a cgroup and its children, deepest first.
func removeCgroupTree(root string) error {
	var dirs []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// iptablesSave returns bin-save's output by table: chain declarations
// (":NAME ...") and rules ("-A ..."), without counters.
func iptablesSave(bin string) (map[string][]string, error) {
	out, err := exec.Command(bin + "-save").Output()
	if err != nil {
		return nil, fmt.Errorf("%s-save: %w", bin, err)
	}
	tables := map[string][]string{}
	table := ""
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			tables[table] = []string{}
		case strings.HasPrefix(line, ":") && table != "":
			name, _, _ := strings.Cut(line[1:], " ")
			tables[table] = append(tables[table], ":"+name)
		case strings.HasPrefix(line, "-A ") && table != "":
			tables[table] = append(tables[table], line)
		}
	}
	return tables, nil
}

// restoreIptables removes the rules and chains that were added since
// before was saved: rules added to chains that existed are deleted one by
// one, chains that did not exist are flushed and deleted. (kube-router's
// own --cleanup-config panics in v2.1.0.)
func restoreIptables(bin string, before map[string][]string) error {
	now, err := iptablesSave(bin)
	if err != nil {
		return err
	}
	var script strings.Builder
	for table, lines := range now {
		old := before[table]
		var dels, newChains []string
		for _, l := range lines {
			if slices.Contains(old, l) {
				continue
			}
			if strings.HasPrefix(l, ":") {
				newChains = append(newChains, l[1:])
				continue
			}
			chain, _, _ := strings.Cut(strings.TrimPrefix(l, "-A "), " ")
			if slices.Contains(old, ":"+chain) {
				dels = append(dels, "-D "+strings.TrimPrefix(l, "-A "))
			}
		}
		if len(dels) == 0 && len(newChains) == 0 {
			continue
		}
		fmt.Fprintf(&script, "*%s\n", table)
		for _, d := range dels {
			script.WriteString(d + "\n")
		}
		for _, c := range newChains {
			fmt.Fprintf(&script, "-F %s\n", c)
		}
		for _, c := range newChains {
			fmt.Fprintf(&script, "-X %s\n", c)
		}
		script.WriteString("COMMIT\n")
	}
	if script.Len() > 0 {
		cmd := exec.Command(bin+"-restore", "--noflush")
		cmd.Stdin = strings.NewReader(script.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s-restore: %w: %s", bin, err, out)
		}
	}
	return dropNewTables(bin, before, now)
}

// dropNewTables deletes the tables iptables-nft created on first use
// (nf_tables keeps them, empty, once rules are gone). The legacy backend's
// tables are kernel modules that were always there: nothing to do.
func dropNewTables(bin string, before, now map[string][]string) error {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !bytes.Contains(out, []byte("nf_tables")) {
		return nil
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	family := "ip"
	if bin == "ip6tables" {
		family = "ip6"
	}
	var errs []error
	for table := range now {
		if _, existed := before[table]; existed {
			continue
		}
		if out, err := exec.Command("nft", "delete", "table", family, table).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft delete table %s %s: %w: %s", family, table, err, out))
		}
	}
	return errors.Join(errs...)
}

func ipsetNames() ([]string, error) {
	out, err := exec.Command("ipset", "list", "-n").Output()
	if err != nil {
		return nil, fmt.Errorf("ipset list: %w", err)
	}
	return strings.Fields(string(out)), nil
}
