package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

var (
	// killOptions: the kill switch retries for as long as Vault, the
	// apiserver or Temporal's visibility are down — an agent once killed
	// must end up with nothing running and nothing valid.
	killOptions = workflow.ActivityOptions{
		Summary:                "kill: cancel cycles, delete Jobs, revoke tokens",
		StartToCloseTimeout:    5 * time.Minute,
		HeartbeatTimeout:       15 * time.Second,
		ScheduleToCloseTimeout: time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,
			NonRetryableErrorTypes: []string{contract.ErrTypeInvalidRequest},
		},
	}
	seedOptions = workflow.LocalActivityOptions{
		Summary:             "read the agent from the catalog",
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{contract.ErrTypeInvalidRequest},
		},
	}
)

// agent is the state an Agent workflow run shares with its handlers.
type agent struct {
	st       contract.AgentState
	limits   contract.AgentLimits
	recent   map[string]bool
	handled  int                     // updates handled in this run
	releases workflow.ReceiveChannel // budget holds given back (SignalRelease)
	reports  workflow.ReceiveChannel // cycle reports (SignalReportCycle)
	// reportBatches carries several reports per signal (SignalReportCycles).
	reportBatches workflow.ReceiveChannel
	// memo: this run publishes its AgentView in its memo (version
	// "agent-memo"); published is the last view it wrote.
	memo      bool
	published *contract.AgentView
	// earned: this run keeps evidence, demotes and offers promotions
	// (version 2 of "agent-memo").
	earned bool
	// canary: this run keeps versions, pairs canaries and takes "Not yet"
	// (version 1 of "agent-canary", agent_canary.go).
	canary bool
}

// Agent is the long-running workflow holding one agent's live state
// (workflow id agent/<id>): status, current phase per action class, counters
// and recent transitions. Cycles read it when they plan (QueryAgentState)
// and report to it when they end (SignalReportCycle); humans kill it
// (UpdateKill: refuses new cycles at once, then runs the KillAgent activity)
// and resume it with two approvers (UpdateResume: back in shadow). It never
// ends by itself: it continues as new after AgentLimits, carrying its state.
func Agent(ctx workflow.Context, in contract.AgentInput) (contract.AgentState, error) {
	ag := &agent{limits: in.Limits.WithDefaults(), recent: map[string]bool{}}
	query := func() (contract.AgentState, error) {
		s := ag.snapshot()
		// Internal: only continue-as-new needs them (holds are counted).
		s.RecentCycles = nil
		s.Budget = s.Budget.Summary(workflow.Now(ctx))
		return s, nil
	}
	if err := workflow.SetQueryHandler(ctx, contract.QueryAgentState, query); err != nil {
		return contract.AgentState{}, err
	}
	// Runs recorded before the memo existed replay without it.
	// Version 2 keeps evidence, demotes and offers promotions.
	v := workflow.GetVersion(ctx, "agent-memo", workflow.DefaultVersion, 2)
	ag.memo, ag.earned = v >= 1, v >= 2
	ag.canary = workflow.GetVersion(ctx, "agent-canary", workflow.DefaultVersion, 1) >= 1
	switch {
	case in.State != nil:
		ag.st = *in.State
		for _, id := range ag.st.RecentCycles {
			ag.recent[id] = true
		}
	case in.Seed != nil:
		ag.seed(ctx, *in.Seed)
	default:
		id := strings.TrimPrefix(workflow.GetInfo(ctx).WorkflowExecution.ID, "agent/")
		var seed contract.AgentSeed
		var a *activities.Activities
		lctx := workflow.WithLocalActivityOptions(ctx, seedOptions)
		if err := workflow.ExecuteLocalActivity(lctx, a.CatalogSeed, activities.AgentStateInput{AgentID: id}).Get(ctx, &seed); err != nil {
			return contract.AgentState{}, err
		}
		ag.seed(ctx, seed)
	}
	ag.adoptCatalogVersion(ctx)
	ag.publish(ctx)
	if err := ag.registerHandlers(ctx); err != nil {
		return contract.AgentState{}, err
	}

	catalog := workflow.GetSignalChannel(ctx, contract.SignalAgentCatalog)
	drain := func() {
		var s contract.AgentSeed
		for catalog.ReceiveAsync(&s) {
			ag.applyCatalog(ctx, s)
		}
		ag.drainSignals(ctx)
	}
	for {
		if err := workflow.Await(ctx, func() bool {
			return catalog.Len() > 0 || ag.releases.Len() > 0 || ag.reports.Len() > 0 || ag.reportBatches.Len() > 0 || ag.mustContinue(ctx)
		}); err != nil {
			return ag.snapshot(), err
		}
		drain()
		if ag.mustContinue(ctx) {
			break
		}
	}
	// Hand over: let running handlers (a kill in progress) finish first.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return ag.snapshot(), err
	}
	drain()
	next := ag.snapshot()
	next.Runs++
	return next, workflow.NewContinueAsNewError(ctx, contract.AgentWorkflowName, contract.AgentInput{State: &next, Limits: in.Limits})
}

// mustContinue reports whether this run is long enough to hand over.
func (ag *agent) mustContinue(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return ag.handled >= ag.limits.MaxUpdates || info.GetContinueAsNewSuggested() ||
		info.GetCurrentHistoryLength() >= ag.limits.MaxHistory
}

func (ag *agent) snapshot() contract.AgentState {
	s := ag.st
	s.Phases, s.Caps = maps.Clone(s.Phases), maps.Clone(s.Caps)
	s.Approvers = slices.Clone(s.Approvers)
	s.Transitions = slices.Clone(s.Transitions)
	s.RecentCycles = slices.Clone(s.RecentCycles)
	s.Counters = cloneCounters(s.Counters)
	s.Budget = s.Budget.Clone()
	s.Evidence, s.Promotions = maps.Clone(s.Evidence), maps.Clone(s.Promotions)
	s.Shadow = slices.Clone(s.Shadow)
	s.Versions = s.Versions.Clone()
	for i := range s.Shadow {
		s.Shadow[i].Feedback = slices.Clone(s.Shadow[i].Feedback)
		s.Shadow[i].Selves = slices.Clone(s.Shadow[i].Selves)
	}
	return s
}

// seed starts a new agent: active, at the catalog's phases.
func (ag *agent) seed(ctx workflow.Context, s contract.AgentSeed) {
	ag.st = contract.AgentState{
		AgentID: s.AgentID, Status: contract.AgentActive, Phases: capped(startPhases(s), s.Phases), Caps: maps.Clone(s.Phases),
		Approvers: slices.Clone(s.Approvers), Namespace: s.Namespace, Budget: contract.AgentBudget{Limits: s.Budgets},
		Trust: s.Trust,
	}
	ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionSeeded, To: contract.AgentActive, Why: "seeded from the catalog"})
}

// startPhases are a new agent's phases: the catalog's, or its trust's
// start phase for every class (capped by the catalog below).
func startPhases(s contract.AgentSeed) map[policy.Class]policy.Phase {
	if s.Trust.Start == "" {
		return s.Phases
	}
	out := map[policy.Class]policy.Phase{}
	for cl := range s.Phases {
		out[cl] = s.Trust.Start
	}
	return out
}

// capped is policy.Agent.CappedPhases over a bare map of caps.
func capped(current, caps map[policy.Class]policy.Phase) map[policy.Class]policy.Phase {
	return (&policy.Agent{Phases: caps}).CappedPhases(current)
}

// transition records a change (bounded) and applies its status.
func (ag *agent) transition(ctx workflow.Context, t contract.AgentTransition) {
	t.At = workflow.Now(ctx)
	if t.From == "" && ag.st.Status != "" && ag.st.Status != t.To {
		t.From = ag.st.Status
	}
	if t.Phases == nil {
		t.Phases = maps.Clone(ag.st.Phases)
	}
	if t.To != ag.st.Status || t.Kind == contract.TransitionSeeded {
		ag.st.Since, ag.st.Why = t.At, t.Why
	}
	ag.st.Status = t.To
	ag.syncEvidence(t.At)
	ag.st.Transitions = append(ag.st.Transitions, t)
	agentTransition(ctx, ag.st.AgentID, t.Kind)
	if n := len(ag.st.Transitions) - contract.AgentTransitionsKept; n > 0 {
		ag.st.Transitions = slices.Delete(ag.st.Transitions, 0, n)
	}
	workflow.GetLogger(ctx).Info("agent transition", "agent", ag.st.AgentID, "kind", t.Kind, "to", t.To, "by", t.By, "why", t.Why)
	ag.publish(ctx)
}

// publish writes the agent's view to its memo when it changed, where
// cycles read it (contract.AgentMemoKey).
func (ag *agent) publish(ctx workflow.Context) {
	if !ag.memo || ag.st.Status == "" {
		return
	}
	v := ag.st.View()
	if ag.published != nil && ag.published.Same(v) {
		return
	}
	if err := workflow.UpsertMemo(ctx, map[string]any{contract.AgentMemoKey: v}); err != nil {
		workflow.GetLogger(ctx).Error("publish agent view", "error", err)
		return
	}
	ag.published = &v
}

// applyCatalog takes a changed catalog: new caps (phases above them come
// down), approvers, namespace and budgets.
func (ag *agent) applyCatalog(ctx workflow.Context, s contract.AgentSeed) {
	if s.AgentID != ag.st.AgentID || len(s.Phases) == 0 {
		return
	}
	phases := capped(ag.st.Phases, s.Phases)
	changed := !maps.Equal(phases, ag.st.Phases)
	ag.st.Caps, ag.st.Phases = maps.Clone(s.Phases), phases
	ag.st.Approvers, ag.st.Namespace = slices.Clone(s.Approvers), s.Namespace
	ag.st.Budget.Limits = s.Budgets
	ag.st.Trust = s.Trust
	ag.adoptCatalogVersion(ctx)
	if changed {
		ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionCatalog, To: ag.st.Status, Why: "catalog changed the phase caps"})
	}
	ag.publish(ctx)
}

func (ag *agent) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateReportCycle, ag.report,
		workflow.UpdateHandlerOptions{Validator: ag.validateReport}); err != nil {
		return err
	}
	if err := ag.registerBudgetHandlers(ctx); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateFeedback, ag.feedback,
		workflow.UpdateHandlerOptions{Validator: ag.validateFeedback}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdatePromote, ag.promote,
		workflow.UpdateHandlerOptions{Validator: ag.validatePromote}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateKill, ag.kill,
		workflow.UpdateHandlerOptions{Validator: ag.validateKill}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateResume, ag.resume,
		workflow.UpdateHandlerOptions{Validator: ag.validateResume})
}

func (ag *agent) validateReport(_ workflow.Context, r contract.CycleReport) error {
	if r.WorkflowID == "" {
		return errors.New("workflow_id is required")
	}
	if r.AgentID != ag.st.AgentID || !strings.HasPrefix(r.WorkflowID, "cycle/"+ag.st.AgentID+"/") {
		return fmt.Errorf("cycle %s is not a cycle of agent %s", r.WorkflowID, ag.st.AgentID)
	}
	return nil
}

// report counts a cycle once; a repeat (a retried activity) changes
// nothing. Whatever the cycle still held against the budgets is released.
func (ag *agent) report(ctx workflow.Context, r contract.CycleReport) (contract.ReportCycleResult, error) {
	ag.handled++
	ag.releaseCycle(ctx, r.WorkflowID)
	if ag.recent[r.WorkflowID] {
		return contract.ReportCycleResult{Duplicate: true}, nil
	}
	ag.recent[r.WorkflowID] = true
	ag.st.RecentCycles = append(ag.st.RecentCycles, r.WorkflowID)
	if n := len(ag.st.RecentCycles) - contract.AgentRecentCyclesKept; n > 0 {
		for _, id := range ag.st.RecentCycles[:n] {
			delete(ag.recent, id)
		}
		ag.st.RecentCycles = slices.Delete(ag.st.RecentCycles, 0, n)
	}
	c := &ag.st.Counters
	c.Cycles++
	if c.Outcomes == nil {
		c.Outcomes = map[string]int{}
	}
	c.Outcomes[r.Outcome]++
	for o, n := range r.Actions {
		if c.Actions == nil {
			c.Actions = map[string]int{}
		}
		c.Actions[o] += n
	}
	c.Approvals += r.Approvals
	c.Denials += r.Denials
	if r.Violation {
		c.Violations++
	}
	if r.Unverified {
		c.Unverified++
	}
	c.CountRefusals(r.Refusals)
	if ag.absorbVersion(ctx, r) {
		// A canary's evidence is pairing: nothing it did counts for the
		// classes, and its violations do not demote the trusted version.
		return contract.ReportCycleResult{Counted: true}, nil
	}
	ag.addShadow(ctx, r.Shadow)
	ag.absorb(ctx, r)
	return contract.ReportCycleResult{Counted: true}, nil
}

func (ag *agent) validateKill(_ workflow.Context, r contract.KillRequest) error {
	switch {
	case strings.TrimSpace(r.Reason) == "":
		return errors.New("a reason is required to kill an agent")
	case r.By == "":
		return errors.New("who kills (by) is required")
	case !slices.Contains(ag.st.Approvers, r.By):
		return fmt.Errorf("%s is not an approver of agent %s", r.By, ag.st.AgentID)
	}
	return nil
}

// kill marks the agent killed — from this moment its new cycles are
// refused — then runs the KillAgent activity: cancel its cycles, delete its
// Jobs and Pods, revoke its Vault token tree. Killing a killed agent sweeps
// again (harmless).
func (ag *agent) kill(ctx workflow.Context, r contract.KillRequest) (contract.KillReport, error) {
	ag.handled++
	if ag.st.Status != contract.AgentKilled {
		ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionKilled, To: contract.AgentKilled, By: []string{r.By}, Why: viaWhy(r.Reason, r.Via)})
	}
	var a *activities.Activities
	var out contract.KillReport
	actx := workflow.WithActivityOptions(ctx, killOptions)
	if err := workflow.ExecuteActivity(actx, a.KillAgent, activities.KillAgentInput{AgentID: ag.st.AgentID, Namespace: ag.st.Namespace}).Get(ctx, &out); err != nil {
		return out, err
	}
	ag.st.LastKill = &out
	// Nothing of the agent runs or waits any more.
	ag.st.Budget.Holds = nil
	return out, nil
}

func viaWhy(reason, via string) string {
	if via == "" {
		return reason
	}
	return reason + " (via " + via + ")"
}

func (ag *agent) validateResume(_ workflow.Context, r contract.ResumeRequest) error {
	if ag.st.Status == contract.AgentActive {
		return fmt.Errorf("agent %s is active: nothing to resume", ag.st.AgentID)
	}
	var distinct []string
	for _, by := range r.By {
		if !slices.Contains(ag.st.Approvers, by) {
			return fmt.Errorf("%s is not an approver of agent %s", by, ag.st.AgentID)
		}
		if !slices.Contains(distinct, by) {
			distinct = append(distinct, by)
		}
	}
	if len(distinct) < contract.ResumeApprovers {
		return fmt.Errorf("resuming agent %s needs %d distinct approvers, got %d (%s)",
			ag.st.AgentID, contract.ResumeApprovers, len(distinct), strings.Join(distinct, ", "))
	}
	return nil
}

// resume brings the agent back with every class in shadow: trust is earned
// again from the start.
func (ag *agent) resume(ctx workflow.Context, r contract.ResumeRequest) (contract.AgentState, error) {
	ag.handled++
	phases := map[policy.Class]policy.Phase{}
	for cl := range ag.st.Caps {
		phases[cl] = policy.PhaseShadow
	}
	ag.st.Phases = phases
	why := r.Reason
	if why == "" {
		why = "resumed"
	}
	var by []string
	for _, b := range r.By {
		if !slices.Contains(by, b) {
			by = append(by, b)
		}
	}
	ag.transition(ctx, contract.AgentTransition{Kind: contract.TransitionResumed, To: contract.AgentActive, By: by, Why: viaWhy(why, r.Via)})
	return ag.snapshot(), nil
}
