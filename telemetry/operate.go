package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// KillSwitchUsed counts a kill that was carried out for agent.
func (m *Metrics) KillSwitchUsed(ctx context.Context, agent string) {
	if m == nil {
		return
	}
	m.killSwitch.Add(ctx, 1, metric.WithAttributes(attribute.String(AttrAgent, agent)))
}

// State is what is true now, read when Prometheus scrapes: the cycles
// waiting for a human and every known agent's status and phases. The
// source of truth is Temporal (visibility and the agents' workflows), not
// this process: a restarted worker, or one of several, reports the same.
type State struct {
	// Waiting are the cycles waiting for an approval or in a veto window.
	Waiting []WaitingCycle
	// Agents are the catalog's agents, with their live status and phases.
	Agents []AgentState
}

// WaitingCycle is one cycle waiting for a human.
type WaitingCycle struct {
	Agent string
	// Since is when the cycle started: an upper bound of how long it has
	// waited (a cycle plans in milliseconds, then waits).
	Since time.Time
}

// AgentState is one agent's status and phase per action class.
type AgentState struct {
	Agent  string
	Status string
	Phases map[string]string // class → phase
}

// StateReader reads State; it is called at every scrape, with a deadline.
type StateReader func(ctx context.Context) (State, error)

// Values the gauges enumerate, so a series at 0 says "not this one" rather
// than disappearing.
var (
	statePhases   = []string{"shadow", "advisory", "supervised", "autonomous"}
	stateStatuses = []string{"active", "suspended", "killed"}
)

// stateTimeout bounds one read: a scrape must answer even when Temporal
// does not.
const stateTimeout = 5 * time.Second

// ObserveState registers the gauges read reports: approvals waiting and the
// age of the oldest per agent (every agent of the State reports, at 0 when
// nothing waits), and each agent's phase per class and status as 1 for the
// current value and 0 for the others. now gives the time ages are measured
// at (time.Now when nil). A failed read reports nothing for that scrape and
// goes to the OpenTelemetry error handler (the log). Unregister the returned
// registration when the process stops serving.
func (m *Metrics) ObserveState(read StateReader, now func() time.Time) (metric.Registration, error) {
	if m == nil {
		return nil, errors.New("observe state: no metrics")
	}
	if now == nil {
		now = time.Now
	}
	var errs []error
	gauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		opts := []metric.Float64ObservableGaugeOption{metric.WithDescription(desc)}
		if unit != "" {
			opts = append(opts, metric.WithUnit(unit))
		}
		g, err := m.meter.Float64ObservableGauge(name, opts...)
		errs = append(errs, err)
		return g
	}
	pending := gauge(MetricApprovalsPending, "", "Cycles waiting for a human (approval or veto window) now, by agent.")
	oldest := gauge(MetricApprovalsOldest, "s", "Age of the oldest cycle waiting for a human, since it started, by agent (0: none waiting).")
	phase := gauge(MetricAgentPhase, "", "An agent's current trust phase per action class: 1 for the current phase, 0 for the others.")
	status := gauge(MetricAgentStatus, "", "An agent's status: 1 for the current one (active, suspended, killed), 0 for the others.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("create state gauges: %w", err)
	}
	return m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, stateTimeout)
		defer cancel()
		st, err := read(ctx)
		if err != nil {
			return fmt.Errorf("read state for metrics: %w", err)
		}
		observeState(o, st, now(), pending, oldest, phase, status)
		return nil
	}, pending, oldest, phase, status)
}

func observeState(o metric.Observer, st State, now time.Time, pending, oldest, phase, status metric.Float64ObservableGauge) {
	type backlog struct {
		n     int
		since time.Time
	}
	waiting := map[string]*backlog{}
	for _, a := range st.Agents {
		waiting[a.Agent] = &backlog{}
	}
	for _, w := range st.Waiting {
		b := waiting[w.Agent]
		if b == nil {
			b = &backlog{}
			waiting[w.Agent] = b
		}
		b.n++
		if b.since.IsZero() || w.Since.Before(b.since) {
			b.since = w.Since
		}
	}
	for agent, b := range waiting {
		attrs := metric.WithAttributes(attribute.String(AttrAgent, agent))
		o.ObserveFloat64(pending, float64(b.n), attrs)
		age := 0.0
		if b.n > 0 {
			age = max(now.Sub(b.since).Seconds(), 0)
		}
		o.ObserveFloat64(oldest, age, attrs)
	}
	for _, a := range st.Agents {
		for class, current := range a.Phases {
			for _, p := range statePhases {
				o.ObserveFloat64(phase, oneIf(p == current), metric.WithAttributes(
					attribute.String(AttrAgent, a.Agent), attribute.String(AttrClass, class), attribute.String(AttrPhase, p)))
			}
		}
		for _, s := range stateStatuses {
			o.ObserveFloat64(status, oneIf(s == a.Status), metric.WithAttributes(
				attribute.String(AttrAgent, a.Agent), attribute.String(AttrStatus, s)))
		}
	}
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
