// Package infraaudit joins, for one cycle, its thought trail with what the
// infrastructure recorded about it: the Vault file audit device's entries
// for its action tokens (issue, use, renew, revoke) and the kube-apiserver
// audit events of its Job, Pods, Secret and NetworkPolicy. The result is one
// time-ordered timeline: who did what, with which credential.
//
// Nothing secret is ever read out of the logs: only timestamps, paths,
// operations, verbs, object names, user names, policies and token
// accessors (which authenticate nothing). Token ids, request and response
// data stay where they are — HMACed by Vault, absent from Metadata-level
// apiserver events.
package infraaudit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockhq/airlock/contract"
)

// Sources of timeline events.
const (
	SourceTrail = "trail"
	SourceVault = "vault"
	SourceKube  = "kubernetes"
)

// Event is one line of the timeline.
type Event struct {
	At     time.Time
	Source string
	// Action is the cycle's action index the event belongs to, if known.
	Action *int
	// Actor is who made the request: a Vault token's display name and
	// accessor, an apiserver user; empty for trail entries.
	Actor string
	What  string
	// Accessor is the action token the event is about (Vault events).
	Accessor string
	// Count > 1 folds identical consecutive events (e.g. status patches).
	Count int
}

// Object is a Kubernetes object of the cycle: Name and every object named
// "<Name>-…" in Namespace (the Job's Pods, Secret and NetworkPolicy).
type Object struct {
	Namespace string
	Name      string
	Action    int
}

// Subject is what the logs are searched for.
type Subject struct {
	WorkflowID string
	// Accessors maps each action token's accessor to its action index.
	Accessors map[string]int
	Objects   []Object
	// Since skips log lines before it (names are reused if a workflow id is).
	Since time.Time
}

// SubjectOf reads a cycle's subject from its trail: lease entries name the
// token accessors, the Job, its Secret and its namespace.
func SubjectOf(workflowID string, trail []contract.AuditEntry) Subject {
	s := Subject{WorkflowID: workflowID, Accessors: map[string]int{}}
	if len(trail) > 0 {
		s.Since = trail[0].At.Add(-time.Minute)
	}
	seen := map[Object]bool{}
	for _, e := range trail {
		if e.Action == nil {
			continue
		}
		str := func(k string) string { v, _ := e.Data[k].(string); return v }
		if acc := str("accessor"); acc != "" {
			s.Accessors[acc] = *e.Action
		}
		if ns, job := str("namespace"), str("job"); ns != "" && job != "" {
			o := Object{Namespace: ns, Name: job, Action: *e.Action}
			if !seen[o] {
				seen[o] = true
				s.Objects = append(s.Objects, o)
			}
		}
	}
	return s
}

// Stats says how much of a log was read and used.
type Stats struct {
	Lines     int
	Matched   int
	Malformed int
	// HMACedAccessors counts entries whose accessor Vault HMACed: those
	// cannot be matched (see the device's hmac_accessor and the token
	// mount's audit_non_hmac_request_keys).
	HMACedAccessors int
}

func (s Stats) String() string {
	out := fmt.Sprintf("%d lines, %d matched", s.Lines, s.Matched)
	if s.Malformed > 0 {
		out += fmt.Sprintf(", %d malformed skipped", s.Malformed)
	}
	if s.HMACedAccessors > 0 {
		out += fmt.Sprintf(", %d with HMACed accessors (unmatchable: set hmac_accessor=false and audit_non_hmac_request_keys=accessor)", s.HMACedAccessors)
	}
	return out
}

// maxLine bounds one log line; longer lines are an error, not a skip.
const maxLine = 16 << 20

// eachLine calls fn with every non-blank line of r.
func eachLine(r io.Reader, st *Stats, fn func([]byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		st.Lines++
		if err := fn(line); err != nil {
			st.Malformed++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", st.Lines+1, err)
	}
	return nil
}

// TrailEvents turns a trail into timeline events.
func TrailEvents(trail []contract.AuditEntry) []Event {
	out := make([]Event, 0, len(trail))
	for _, e := range trail {
		what := e.Kind + ": " + oneLine(e.Summary)
		if acc, _ := e.Data["accessor"].(string); acc != "" && e.Kind == contract.AuditLease {
			what += " (accessor " + acc + ")"
		}
		out = append(out, Event{At: e.At, Source: SourceTrail, Action: e.Action, What: what, Accessor: accessorOf(e)})
	}
	return out
}

func accessorOf(e contract.AuditEntry) string {
	if e.Kind != contract.AuditLease {
		return ""
	}
	acc, _ := e.Data["accessor"].(string)
	return acc
}

// Report is a cycle's joined timeline.
type Report struct {
	Subject Subject
	Events  []Event
	// Vault and Kube are nil when that log was not read.
	Vault, Kube *Stats
}

// Options name the logs to read; a nil reader is skipped.
type Options struct {
	VaultLog io.Reader
	KubeLog  io.Reader
}

// ErrNoLogs: neither log was given.
var ErrNoLogs = errors.New("infra audit: give a Vault audit log, an apiserver audit log, or both")

// Build reads the logs for the cycle's subject and merges them with its
// trail into one timeline.
func Build(workflowID string, trail []contract.AuditEntry, opts Options) (*Report, error) {
	if opts.VaultLog == nil && opts.KubeLog == nil {
		return nil, ErrNoLogs
	}
	r := &Report{Subject: SubjectOf(workflowID, trail)}
	lists := [][]Event{TrailEvents(trail)}
	if opts.VaultLog != nil {
		ev, st, err := ReadVault(opts.VaultLog, r.Subject)
		if err != nil {
			return nil, fmt.Errorf("vault audit log: %w", err)
		}
		r.Vault, lists = &st, append(lists, ev)
	}
	if opts.KubeLog != nil {
		ev, st, err := ReadKube(opts.KubeLog, r.Subject)
		if err != nil {
			return nil, fmt.Errorf("apiserver audit log: %w", err)
		}
		r.Kube, lists = &st, append(lists, ev)
	}
	r.Events = Merge(lists...)
	return r, nil
}

// sourceOrder breaks ties at the same instant: the trail's record of a
// step comes after what the systems logged while it happened.
var sourceOrder = map[string]int{SourceVault: 0, SourceKube: 1, SourceTrail: 2}

// Merge orders events by time (stable: each source keeps its order) and
// folds identical consecutive events of one source.
func Merge(lists ...[]Event) []Event {
	var all []Event
	for _, l := range lists {
		all = append(all, l...)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if !all[i].At.Equal(all[j].At) {
			return all[i].At.Before(all[j].At)
		}
		return sourceOrder[all[i].Source] < sourceOrder[all[j].Source]
	})
	out := all[:0]
	for _, e := range all {
		if e.Count == 0 {
			e.Count = 1
		}
		if n := len(out); n > 0 && e.Source != SourceTrail && sameEvent(out[n-1], e) {
			out[n-1].Count += e.Count
			continue
		}
		out = append(out, e)
	}
	return slices.Clip(out)
}

func sameEvent(a, b Event) bool {
	return a.Source == b.Source && a.Actor == b.Actor && a.What == b.What && a.Accessor == b.Accessor &&
		(a.Action == nil) == (b.Action == nil) && (a.Action == nil || *a.Action == *b.Action)
}

// Print writes the timeline as a table.
func (r *Report) Print(w io.Writer) error {
	fmt.Fprintf(w, "infrastructure audit of %s\n", r.Subject.WorkflowID)
	accs := make([]string, 0, len(r.Subject.Accessors))
	for a := range r.Subject.Accessors {
		accs = append(accs, a)
	}
	sort.Strings(accs)
	fmt.Fprintf(w, "token accessors: %s\n", orNone(strings.Join(accs, ", ")))
	objs := make([]string, len(r.Subject.Objects))
	for i, o := range r.Subject.Objects {
		objs[i] = o.Namespace + "/" + o.Name + "*"
	}
	fmt.Fprintf(w, "kubernetes objects: %s\n\n", orNone(strings.Join(objs, ", ")))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tSOURCE\tACTION\tWHO\tWHAT")
	for _, e := range r.Events {
		action := "-"
		if e.Action != nil {
			action = fmt.Sprint(*e.Action)
		}
		what := e.What
		if e.Count > 1 {
			what += fmt.Sprintf(" (×%d)", e.Count)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format("2006-01-02 15:04:05.000"), e.Source, action, orDash(oneLine(e.Actor)), oneLine(what))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.Vault != nil {
		fmt.Fprintf(w, "vault audit log: %s\n", r.Vault)
	}
	if r.Kube != nil {
		fmt.Fprintf(w, "apiserver audit log: %s\n", r.Kube)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none in the trail)"
	}
	return s
}

// oneLine keeps a table row on one line and its cells free of tabs.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r', '\t':
			return ' '
		}
		return r
	}, s)
}
