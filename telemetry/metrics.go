package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Instrument names, as Prometheus shows them.
const (
	// Recorded by workflows through the SDK's metrics handler (workflow
	// tags namespace, task_queue, workflow_type added); see WorkflowViews.
	MetricCycles        = "airlock_cycles_total"          // counter{agent, phase, outcome}
	MetricActions       = "airlock_actions_total"         // counter{action_type, outcome}
	MetricApprovalWait  = "airlock_approval_wait_seconds" // histogram{agent, outcome}
	MetricJobDuration   = "airlock_job_duration_seconds"  // histogram{action_type, outcome=succeeded|failed}
	MetricLeasesIssued  = "airlock_leases_issued_total"   // counter{kind}
	MetricLeasesRevoked = "airlock_leases_revoked_total"  // counter{kind}
	MetricLeasesFailed  = "airlock_leases_failed_total"   // counter{kind}
	MetricPolicyDenials = "airlock_policy_denials_total"  // counter{agent, rule}; budget refusals: rule="budget <name>"
	MetricClickToRun    = "airlock_click_to_run_seconds"  // histogram{agent}: approving decision → container started
	// MetricAgentTransitions: counter{agent, kind}: promoted, demoted,
	// clock-reset, canary, version-promoted, declined, killed, resumed, …
	MetricAgentTransitions = "airlock_agent_transitions_total"

	// Recorded from activities (operate.go).
	MetricKillSwitch = "airlock_kill_switch_total" // counter{agent}: kills carried out

	// Observed when scraped, from Temporal (operate.go): what is true now.
	MetricApprovalsPending = "airlock_approvals_pending"                // gauge{agent}: cycles waiting for a human
	MetricApprovalsOldest  = "airlock_approvals_pending_oldest_seconds" // gauge{agent}: age of the oldest, since its cycle started
	MetricAgentPhase       = "airlock_agent_phase"                      // gauge{agent, class, phase}: 1 for the current phase, else 0
	MetricAgentStatus      = "airlock_agent_status"                     // gauge{agent, status}: 1 for the current status, else 0
)

// Attribute keys (Prometheus labels) the helpers set.
const (
	AttrAgent      = "agent"
	AttrPhase      = "phase"
	AttrOutcome    = "outcome"
	AttrActionType = "action_type"
	AttrKind       = "kind"
	AttrRule       = "rule"
	AttrClass      = "class"
	AttrStatus     = "status"
)

// LeaseKinds are the kinds of credential lease activities count.
var LeaseKinds = []string{"token", "database"}

// Outcomes JobDuration records.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// Bucket bounds, in seconds. Approvals wait for people (seconds to a day);
// Jobs run for seconds to an hour.
var (
	approvalWaitBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400}
	jobDurationBuckets  = []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	// Click to run: staging and scheduling take seconds; minutes mean
	// something is stuck. Container start times have 1 s resolution.
	clickToRunBuckets = []float64{1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600}
)

// Metrics are Airlock's own instruments behind helpers that name the
// attributes, so every caller labels the same way. A nil *Metrics records
// nothing, so code under test needs none.
//
// They are recorded from activities. Workflow code records through
// workflow.GetMetricsHandler (TemporalMetricsHandler), which drops what a
// replay records; WorkflowViews describes those instruments.
type Metrics struct {
	meter metric.Meter

	killSwitch    metric.Int64Counter
	actions       metric.Int64Counter
	jobDuration   metric.Float64Histogram
	leasesIssued  metric.Int64Counter
	leasesRevoked metric.Int64Counter
	leasesFailed  metric.Int64Counter
}

// WorkflowViews give the instruments workflows create through the SDK's
// metrics handler (which sets no description and the SDK's default buckets)
// their descriptions and bucket bounds.
func WorkflowViews() []sdkmetric.View {
	desc := func(name, d string) sdkmetric.View {
		return sdkmetric.NewView(sdkmetric.Instrument{Name: name}, sdkmetric.Stream{Description: d})
	}
	return []sdkmetric.View{
		desc(MetricCycles, "Agent cycles finished, by agent, the phase they ended in and outcome."),
		desc(MetricPolicyDenials, "Proposals the policy refused, by agent and rule."),
		desc(MetricAgentTransitions, "Changes of an agent's trust (promotions, demotions, versions, declines) and status, by agent and kind."),
		sdkmetric.NewView(sdkmetric.Instrument{Name: MetricApprovalWait}, sdkmetric.Stream{
			Description: "Time an action waited for a human decision.",
			Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: approvalWaitBuckets},
		}),
		sdkmetric.NewView(sdkmetric.Instrument{Name: MetricClickToRun}, sdkmetric.Stream{
			Description: "Time from the decision that approved an action to its container starting.",
			Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: clickToRunBuckets},
		}),
	}
}

// NewMetrics creates the instruments on meter. Setup calls it; tests of other
// packages may call it with a meter of their own (sdkmetric.NewManualReader).
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	m := Metrics{meter: meter}
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, bounds []float64) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"),
			metric.WithExplicitBucketBoundaries(bounds...))
		errs = append(errs, err)
		return h
	}
	m.actions = counter(MetricActions, "Actions finished, by action type and outcome.")
	m.jobDuration = histogram(MetricJobDuration, "Run time of the Kubernetes Job that carried out an action.", jobDurationBuckets)
	m.leasesIssued = counter(MetricLeasesIssued, "Credential leases issued, by kind.")
	m.leasesRevoked = counter(MetricLeasesRevoked, "Credential leases revoked, by kind.")
	m.leasesFailed = counter(MetricLeasesFailed, "Credential lease operations that failed, by kind.")
	m.killSwitch = counter(MetricKillSwitch, "Kill switch uses carried out (cycles cancelled, Jobs deleted, token tree revoked), by agent.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("create metrics: %w", err)
	}
	// Lease series exist from the start, at 0: the first failure is then an
	// increase alerts can see, and "revoked" is never missing beside
	// "issued".
	for _, kind := range LeaseKinds {
		attrs := metric.WithAttributes(attribute.String(AttrKind, kind))
		for _, c := range []metric.Int64Counter{m.leasesIssued, m.leasesRevoked, m.leasesFailed} {
			c.Add(context.Background(), 0, attrs)
		}
	}
	return &m, nil
}

// ActionFinished counts a finished action.
func (m *Metrics) ActionFinished(ctx context.Context, actionType, outcome string) {
	if m == nil {
		return
	}
	m.actions.Add(ctx, 1, metric.WithAttributes(
		attribute.String(AttrActionType, actionType), attribute.String(AttrOutcome, outcome)))
}

// JobDuration records how long an action's Job ran; the outcome label is
// "succeeded" or "failed".
func (m *Metrics) JobDuration(ctx context.Context, actionType string, d time.Duration, succeeded bool) {
	if m == nil {
		return
	}
	outcome := OutcomeFailed
	if succeeded {
		outcome = OutcomeSucceeded
	}
	m.jobDuration.Record(ctx, d.Seconds(), metric.WithAttributes(
		attribute.String(AttrActionType, actionType), attribute.String(AttrOutcome, outcome)))
}

// LeaseIssued counts a credential lease of kind (e.g. "token", "database").
func (m *Metrics) LeaseIssued(ctx context.Context, kind string) {
	if m == nil {
		return
	}
	m.leasesIssued.Add(ctx, 1, metric.WithAttributes(attribute.String(AttrKind, kind)))
}

// LeaseRevoked counts a revoked credential lease of kind.
func (m *Metrics) LeaseRevoked(ctx context.Context, kind string) {
	if m == nil {
		return
	}
	m.leasesRevoked.Add(ctx, 1, metric.WithAttributes(attribute.String(AttrKind, kind)))
}

// LeaseFailed counts a lease of kind that could not be issued or revoked.
func (m *Metrics) LeaseFailed(ctx context.Context, kind string) {
	if m == nil {
		return
	}
	m.leasesFailed.Add(ctx, 1, metric.WithAttributes(attribute.String(AttrKind, kind)))
}
