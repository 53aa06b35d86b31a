package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestOneWorkerKeepsUp starts CHAOS_LOAD single-action autonomous cycles at
// once on ONE worker process built and configured as in production, kills
// nothing, and requires every cycle to succeed with no activity retried,
// no heartbeat timed out and no result refused by the server.
func TestOneWorkerKeepsUp(t *testing.T) {
	n := envInt("CHAOS_LOAD", 100)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	f := newFleet(t, 1)
	stamp := fmt.Sprintf("load-%d", time.Now().UnixNano())
	start := time.Now()
	ids := make([]string, n)
	results := make([]contract.CycleResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		req := contract.CycleRequest{AgentID: "chaos-auto", CycleID: fmt.Sprintf("%s-%d", stamp, i),
			Actions: []policy.Proposal{{Type: "patch", Params: map[string]any{"seq": i}}}}
		ids[i] = contract.CycleWorkflowID(req.AgentID, req.CycleID)
		wg.Go(func() { results[i], errs[i] = env.starter.RunCycle(ctx, req) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, rss := f.usage(0)
	r := collect(ctx, t, stamp, ids, f)
	succeeded := 0
	for i := range n {
		if errs[i] == nil && results[i].Outcome == contract.OutcomeSucceeded {
			succeeded++
		} else {
			t.Errorf("%s: err %v, outcome %q, actions %v", ids[i], errs[i], results[i].Outcome, outcomes(results[i]))
		}
	}
	fmt.Printf("\none worker, %d concurrent single-action autonomous cycles (1.5 s Jobs): %d succeeded in %s (%.1f cycles/s)\n",
		n, succeeded, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Printf("  worker CPU %.2f s in all, %.1f ms per cycle; RSS %.0f MB\n", cpu.Seconds(), float64(cpu.Milliseconds())/float64(n), float64(rss)/(1<<20))
	r.print(os.Stdout)
	assert.Equal(t, n, succeeded, "every cycle succeeds")
	assert.Zero(t, r.heartbeatTimeouts, "heartbeat timeouts")
	assert.Zero(t, r.retries(), "activity retries: %v", r.retryCauses)
	assert.Zero(t, r.rejected, "activity results the server refused")
	r.assertClean(t)
}

// TestKillWorkersDuringCycles runs CHAOS_CYCLES cycles of every phase on
// CHAOS_WORKERS worker processes while a seeded schedule SIGKILLs and
// restarts them, then checks that no cycle was lost or stuck, no action ran
// twice, nothing was left in the cluster and no credential outlived its
// action by more than 10 s.
func TestKillWorkersDuringCycles(t *testing.T) {
	n, workers := envInt("CHAOS_CYCLES", 48), envInt("CHAOS_WORKERS", 3)
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil {
		seed = s
	}
	fmt.Printf("\nchaos: %d cycles, %d workers, seed %d (replay with CHAOS_SEED=%d)\n", n, workers, seed, seed)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	f := newFleet(t, workers)
	stamp := fmt.Sprintf("kill-%d", seed)

	// The kill schedule: every 0.4–2 s one random worker dies; it comes
	// back 0.2–1.5 s later. Decided by the seed alone.
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	killCtx, stopKilling := context.WithCancel(ctx)
	var killer sync.WaitGroup
	killer.Go(func() {
		for {
			wait := 400*time.Millisecond + time.Duration(rng.Int64N(int64(1600*time.Millisecond)))
			back := 200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond)))
			victim := rng.IntN(workers)
			select {
			case <-killCtx.Done():
				return
			case <-time.After(wait):
			}
			if f.kill(victim) {
				select {
				case <-killCtx.Done():
				case <-time.After(back):
				}
				f.start(victim)
			}
		}
	})

	type cycle struct {
		id      string
		phase   string
		res     contract.CycleResult
		err     error
		wantOut []contract.Outcome
	}
	cycles := make([]*cycle, n)
	var wg sync.WaitGroup
	var approvals atomic.Int64
	for i := range n {
		c := &cycle{}
		cycles[i] = c
		var req contract.CycleRequest
		switch i % 4 {
		case 0:
			read := "probe"
			if i%8 == 0 {
				read = "db-probe"
			}
			req = contract.CycleRequest{AgentID: "chaos-auto", Actions: []policy.Proposal{{Type: read, Params: params(read, i)}, {Type: "patch", Params: params("patch", i)}}}
			c.phase, c.wantOut = "autonomous", []contract.Outcome{contract.OutcomeSucceeded, contract.OutcomeSucceeded}
		case 1:
			req = contract.CycleRequest{AgentID: "chaos-adv", Actions: []policy.Proposal{{Type: "probe", Params: params("probe", i)}, {Type: "patch", Params: params("patch", i)}}}
			c.phase, c.wantOut = "advisory", []contract.Outcome{contract.OutcomeSucceeded, contract.OutcomeSucceeded}
		case 2:
			req = contract.CycleRequest{AgentID: "chaos-sup", Actions: []policy.Proposal{{Type: "probe", Params: params("probe", i)}, {Type: "patch", Params: params("patch", i)}}}
			c.phase, c.wantOut = "supervised", []contract.Outcome{contract.OutcomeSucceeded, contract.OutcomeSucceeded}
		case 3:
			req = contract.CycleRequest{AgentID: "chaos-shadow", Actions: []policy.Proposal{{Type: "probe", Params: params("probe", i)}, {Type: "patch", Params: params("patch", i)}}}
			c.phase, c.wantOut = "shadow", []contract.Outcome{contract.OutcomeSucceeded, contract.OutcomeWouldDo}
		}
		req.CycleID = fmt.Sprintf("%s-%d", stamp, i)
		c.id = contract.CycleWorkflowID(req.AgentID, req.CycleID)
		wg.Go(func() {
			run, err := startRetrying(ctx, req)
			if err != nil {
				c.err = err
				return
			}
			if c.phase == "advisory" {
				if err := approve(ctx, c.id); err != nil {
					c.err = err
					return
				}
				approvals.Add(1)
			}
			c.res, c.err = run.Get(ctx)
		})
	}
	wg.Wait()
	stopKilling()
	killer.Wait()

	ids := make([]string, n)
	for i, c := range cycles {
		ids[i] = c.id
	}
	r := collect(ctx, t, stamp, ids, f)
	lost := 0
	for _, c := range cycles {
		ok := c.err == nil && c.res.Outcome == contract.OutcomeSucceeded && len(c.res.Actions) == len(c.wantOut)
		for j := 0; ok && j < len(c.wantOut); j++ {
			ok = c.res.Actions[j].Outcome == c.wantOut[j]
		}
		if !ok {
			lost++
			t.Errorf("%s (%s): err %v, outcome %q, actions %+v", c.id, c.phase, c.err, c.res.Outcome, outcomes(c.res))
		}
	}
	fmt.Printf("chaos: %d cycles (%d approved by a human), %d SIGKILLs, %d worker starts, seed %d\n",
		n, approvals.Load(), f.kills, f.starts, seed)
	fmt.Printf("  cycles lost, stuck or wrong       %d\n", lost)
	r.print(os.Stdout)
	r.assertClean(t)
}

func params(action string, i int) map[string]any {
	if action == "db-probe" {
		return nil
	}
	return map[string]any{"seq": i}
}

func outcomes(r contract.CycleResult) []string {
	var out []string
	for _, a := range r.Actions {
		out = append(out, fmt.Sprintf("%d:%s %s", a.Index, a.Outcome, a.Error))
	}
	return out
}

// startRetrying starts a cycle; starting is idempotent by workflow id, so
// a start that failed in flight is simply repeated.
func startRetrying(ctx context.Context, req contract.CycleRequest) (*starter.Run, error) {
	for {
		run, err := env.starter.Start(ctx, req)
		if err == nil {
			return run, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("start %s: %w", req.CycleID, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// approve waits until the cycle's write action asks for approval, then
// approves it as U1. Queries and updates need a live worker: while none
// answers they are repeated.
func approve(ctx context.Context, wfID string) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	decided := false
	for {
		pending, err := env.starter.Pending(ctx, wfID)
		if err == nil && len(pending) == 0 && decided && approvedBy(ctx, wfID, "U1") {
			// An earlier Decide went through though its call failed (the
			// worker running the Update was killed): nothing is pending
			// any more, and the trail has the approval.
			return nil
		}
		if err == nil && len(pending) > 0 {
			p := pending[0]
			decided = true
			res, err := env.starter.Decide(ctx, wfID, contract.Decision{
				ActionIndex: p.Action.Index, ActionHash: p.Action.Hash, Kind: contract.DecisionApprove, Approver: "U1", Via: "cli",
			})
			var refused *starter.RefusedError
			switch {
			case err == nil && (res.Status == "approved" || res.Status == "already decided"):
				return nil
			case errors.As(err, &refused):
				return fmt.Errorf("approve %s: %w", wfID, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("approve %s: %w (last: %v)", wfID, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// approvedBy reports whether the cycle's trail records an approval by user.
func approvedBy(ctx context.Context, wfID, user string) bool {
	trail, err := env.starter.Audit(ctx, wfID)
	if err != nil {
		return false
	}
	for _, e := range trail {
		if e.Kind == contract.AuditDecision && e.Data["decision"] == string(contract.DecisionApprove) && e.Data["approver"] == user {
			return true
		}
	}
	return false
}

// report is what a round left behind, counted on the real servers.
type report struct {
	cycles            int
	duplicatePods     int
	secretsLeft       int
	policiesLeft      int
	tokensValid       int
	tokensSeen        int
	dbLeasesLeft      int
	heartbeatTimeouts int
	retryCauses       map[string]int
	rejected          int
	lastClose         time.Time
	checkedAt         time.Time
}

func (r *report) retries() int {
	n := 0
	for _, v := range r.retryCauses {
		n += v
	}
	return n
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "  duplicate Pods per (cycle,action) %d\n", r.duplicatePods)
	fmt.Fprintf(w, "  Secrets left                      %d\n", r.secretsLeft)
	fmt.Fprintf(w, "  NetworkPolicies left              %d\n", r.policiesLeft)
	fmt.Fprintf(w, "  action tokens still valid         %d (checked %.1f s after the last cycle closed; %d agent tokens listed)\n",
		r.tokensValid, r.checkedAt.Sub(r.lastClose).Seconds(), r.tokensSeen)
	fmt.Fprintf(w, "  DB leases still valid             %d\n", r.dbLeasesLeft)
	fmt.Fprintf(w, "  activity results refused         %d\n", r.rejected)
	fmt.Fprintf(w, "  heartbeat timeouts                %d\n", r.heartbeatTimeouts)
	fmt.Fprintf(w, "  retries (activity, workflow task) %d\n", r.retries())
	causes := make([]string, 0, len(r.retryCauses))
	for k := range r.retryCauses {
		causes = append(causes, k)
	}
	sort.Strings(causes)
	for _, k := range causes {
		fmt.Fprintf(w, "    %-40s %d\n", k, r.retryCauses[k])
	}
}

func (r *report) assertClean(t *testing.T) {
	t.Helper()
	assert.Zero(t, r.duplicatePods, "duplicate Pods")
	assert.Zero(t, r.secretsLeft, "Secrets left")
	assert.Zero(t, r.policiesLeft, "NetworkPolicies left")
	assert.Zero(t, r.tokensValid, "action tokens still valid 10 s after the last cycle closed")
	assert.Zero(t, r.dbLeasesLeft, "DB leases still valid")
	assert.Positive(t, r.tokensSeen, "the token listing found the agents' own tokens (else it proves nothing)")
}

// collect counts, once every cycle has closed, what the round left: Pods
// per Job, Secrets and NetworkPolicies, action tokens and DB leases still
// valid 10 s after the last cycle closed, and activity retries by cause.
func collect(ctx context.Context, t *testing.T, stamp string, ids []string, f *fleet) *report {
	t.Helper()
	r := &report{cycles: len(ids), retryCauses: map[string]int{}}
	for _, id := range ids {
		d, err := env.tc.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Errorf("describe %s: %v", id, err)
			continue
		}
		info := d.GetWorkflowExecutionInfo()
		if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			t.Errorf("%s is still running", id)
			continue
		}
		if ct := info.GetCloseTime().AsTime(); ct.After(r.lastClose) {
			r.lastClose = ct
		}
		countRetries(ctx, t, id, r)
	}
	// The claim: nothing valid 10 s after the last cycle closed.
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(r.lastClose.Add(10 * time.Second))):
	}
	r.checkedAt = time.Now()

	for _, ag := range env.catalog.AgentIDs() {
		a, _ := env.catalog.Agent(ag)
		pods, err := env.kube.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelManagedBy + "=" + k8s.ManagedBy})
		require.NoError(t, err)
		perJob := map[string]int{}
		for _, p := range pods.Items {
			if owner := p.Labels["job-name"]; owner != "" {
				perJob[owner]++
			}
		}
		for _, c := range perJob {
			r.duplicatePods += c - 1
		}
		secrets, err := env.kube.CoreV1().Secrets(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: k8s.LabelManagedBy + "=" + k8s.ManagedBy})
		require.NoError(t, err)
		r.secretsLeft += len(secrets.Items)
		nps, err := env.kube.NetworkingV1().NetworkPolicies(a.Namespace).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, np := range nps.Items {
			if strings.HasSuffix(np.Name, "-egress") {
				r.policiesLeft++
			}
		}
	}
	r.tokensSeen, r.tokensValid = actionTokens(ctx, t, stamp)
	r.dbLeasesLeft = dbLeases(ctx, t)
	// The SDK logs a completion the server refused (the attempt had timed
	// out, or the cycle closed) as this.
	r.rejected = strings.Count(f.logs(), "activity already timed out")
	return r
}

// countRetries reads a cycle's history: an activity's started event
// carries its attempt and the failure that made the attempt before fail;
// workflow tasks that timed out or failed are counted too.
func countRetries(ctx context.Context, t *testing.T, id string, r *report) {
	it := env.tc.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	types := map[int64]string{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Errorf("history of %s: %v", id, err)
			return
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			types[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		// Staging and release run as local activities inside workflow
		// tasks: a worker killed in one shows as a timed-out (or failed)
		// workflow task, which another worker retries.
		if a := ev.GetWorkflowTaskTimedOutEventAttributes(); a != nil {
			r.retryCauses["workflow task: timeout "+strings.TrimPrefix(a.GetTimeoutType().String(), "TIMEOUT_TYPE_")]++
		}
		if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil && a.GetCause() != enumspb.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND {
			r.retryCauses["workflow task: failed "+strings.TrimPrefix(a.GetCause().String(), "WORKFLOW_TASK_FAILED_CAUSE_")]++
		}
		a := ev.GetActivityTaskStartedEventAttributes()
		if a == nil || a.GetAttempt() <= 1 {
			continue
		}
		cause := "other"
		if lf := a.GetLastFailure(); lf != nil {
			switch {
			case lf.GetTimeoutFailureInfo() != nil:
				tt := lf.GetTimeoutFailureInfo().GetTimeoutType()
				cause = "timeout " + strings.TrimPrefix(tt.String(), "TIMEOUT_TYPE_")
				if tt == enumspb.TIMEOUT_TYPE_HEARTBEAT {
					r.heartbeatTimeouts++
				}
			case lf.GetApplicationFailureInfo() != nil:
				cause = "error " + lf.GetApplicationFailureInfo().GetType()
			}
		}
		r.retryCauses[types[a.GetScheduledEventId()]+": "+cause] += int(a.GetAttempt() - 1)
	}
}
