package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// cpuSample is the CPU time every process on the machine has used, by
// group (cpuGroup), and the machine's busy and total time, read from /proc.
// Benchmarks take one before and after a round to say where the round's
// CPU went: on this 2-core machine the servers, the worker and the
// benchmark share the cores, so a throughput ratio is only readable next
// to it.
type cpuSample struct {
	byGroup     map[string]time.Duration
	busy, total time.Duration
}

// userHZ is the kernel's USER_HZ, the unit of /proc's CPU times (100 on
// every Linux architecture Go supports).
const userHZ = 100

func ticks(s string) time.Duration {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Duration(n) * time.Second / userHZ
}

// cpuGroup names the part of the stack a process belongs to.
func cpuGroup(comm string, pid int) string {
	switch {
	case pid == os.Getpid():
		return "worker+bench" // the worker, the starter, Slack's fake and the benchmark
	case strings.HasPrefix(comm, "temporal"):
		return "temporal"
	case comm == "vault":
		return "vault"
	case comm == "kube-apiserver":
		return "apiserver"
	case comm == "etcd":
		return "etcd"
	case strings.HasPrefix(comm, "kworker"), strings.HasPrefix(comm, "ksoftirqd"), strings.HasPrefix(comm, "jbd2"):
		return "kernel"
	}
	return "other"
}

func sampleCPU() cpuSample {
	s := cpuSample{byGroup: map[string]time.Duration{}}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue // exited
		}
		st := string(b)
		open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(st[end+1:])
		if len(f) < 14 {
			continue
		}
		s.byGroup[cpuGroup(st[open+1:end], pid)] += ticks(f[11]) + ticks(f[12]) // utime, stime
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for i, v := range strings.Fields(line)[1:] {
			t := ticks(v)
			s.total += t
			if i != 3 && i != 4 { // idle, iowait
				s.busy += t
			}
		}
	}
	return s
}

// cpuUse is what a round used between two samples.
type cpuUse struct {
	byGroup     map[string]time.Duration
	busy, total time.Duration
}

func cpuSince(before cpuSample) cpuUse {
	after := sampleCPU()
	u := cpuUse{byGroup: map[string]time.Duration{}, busy: after.busy - before.busy, total: after.total - before.total}
	for g, v := range after.byGroup {
		// Processes that exited during the round drop out of "after";
		// a negative figure would only be noise.
		if d := v - before.byGroup[g]; d > 0 {
			u.byGroup[g] = d
		}
	}
	return u
}

// perCycle says, for n cycles, the CPU milliseconds per cycle of each
// group, largest first, and how many of the machine's cores were busy.
func (u cpuUse) perCycle(n int) string {
	groups := make([]string, 0, len(u.byGroup))
	for g := range u.byGroup {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool { return u.byGroup[groups[i]] > u.byGroup[groups[j]] })
	var sum time.Duration
	parts := make([]string, 0, len(groups))
	for _, g := range groups {
		sum += u.byGroup[g]
		parts = append(parts, fmt.Sprintf("%s %.1f", g, msPer(u.byGroup[g], n)))
	}
	cores := 0.0
	if u.total > 0 {
		cores = float64(u.busy) / float64(u.total) * float64(numCPU())
	}
	return fmt.Sprintf("%.1f ms CPU per cycle (%s); %.2f of %d cores busy", msPer(sum, n), strings.Join(parts, ", "), cores, numCPU())
}

func msPer(d time.Duration, n int) float64 {
	return float64(d) / float64(time.Millisecond) / float64(n)
}

// numCPU counts the cpuN lines of /proc/stat (the machine's, not the
// process's affinity).
func numCPU() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if len(l) > 3 && strings.HasPrefix(l, "cpu") && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
}
