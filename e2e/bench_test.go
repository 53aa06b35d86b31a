package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

// BenchmarkCycleOverhead measures, in one run, a single-action autonomous
// cycle through Temporal against a bare program making the same Vault and
// Kubernetes calls (create Job suspended, lease token, Secret,
// NetworkPolicy, unsuspend, wait, revoke, clean up). The two alternate so
// both see the same machine load. Run: make bench (-benchtime 30x).
func BenchmarkCycleOverhead(b *testing.B) {
	ctx := context.Background()
	jobs := k8s.NewRunner(env.kube)
	acts := &activities.Activities{Catalog: env.catalog, Broker: env.broker, Jobs: jobs}
	plan, err := env.catalog.Plan("e2e", []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "bench"}}})
	if err != nil {
		b.Fatal(err)
	}
	var cycle, raw, floor []time.Duration
	stamp := time.Now().UnixNano()
	queue := minimalWorker(b)
	var shape cycleShape
	i := 0
	for b.Loop() {
		start := time.Now()
		res, err := env.starter.RunCycle(ctx, contract.CycleRequest{
			AgentID: "e2e", CycleID: fmt.Sprintf("bench-%d-%d", stamp, i),
			Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "bench"}}},
		})
		if err != nil || res.Outcome != contract.OutcomeSucceeded {
			b.Fatalf("cycle: %v %+v", err, res)
		}
		cycle = append(cycle, time.Since(start))
		if i == 0 {
			shape = shapeOf(ctx, b, res.WorkflowID)
		}

		start = time.Now()
		in := activities.StageInput{WorkflowID: fmt.Sprintf("raw/%d/%d", stamp, i), AgentID: "e2e", Namespace: ns, Action: plan.Actions[0]}
		if err := rawAction(ctx, acts, jobs, in); err != nil {
			b.Fatalf("raw: %v", err)
		}
		raw = append(raw, time.Since(start))

		start = time.Now()
		run, err := env.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: fmt.Sprintf("shape-%d-%d", stamp, i), TaskQueue: queue}, cycleShapeWorkflow, shape)
		if err == nil {
			err = run.Get(ctx, nil)
		}
		if err != nil {
			b.Fatalf("minimal workflow: %v", err)
		}
		floor = append(floor, time.Since(start))
		i++
	}
	c50, c99 := percentiles(cycle)
	r50, r99 := percentiles(raw)
	b.ReportMetric(ms(c50), "cycle-p50-ms")
	b.ReportMetric(ms(c99), "cycle-p99-ms")
	b.ReportMetric(ms(r50), "raw-p50-ms")
	b.ReportMetric(ms(r99), "raw-p99-ms")
	b.ReportMetric(float64(c50)/float64(r50), "ratio-p50")
	fmt.Fprintf(os.Stdout, "\nsingle-action autonomous cycle vs. bare Vault+Kubernetes calls, n=%d\n", len(cycle))
	fmt.Fprintf(os.Stdout, "  cycle  p50 %7.1f ms  p99 %7.1f ms\n", ms(c50), ms(c99))
	fmt.Fprintf(os.Stdout, "  raw    p50 %7.1f ms  p99 %7.1f ms\n", ms(r50), ms(r99))
	fmt.Fprintf(os.Stdout, "  ratio  p50 %.3fx      p99 %.3fx   (target p50 <= 1.10x)\n", float64(c50)/float64(r50), float64(c99)/float64(r99))
	fmt.Fprintf(os.Stdout, "  engine overhead per action: p50 %.1f ms (target <= 25 ms)\n", ms(c50-r50))
	f50, f99 := percentiles(floor)
	fmt.Fprintf(os.Stdout, "  of which Temporal alone: a workflow of the cycle's shape doing nothing (%d local activities, an activity, %d local activities): p50 %.1f ms, p99 %.1f ms\n",
		shape.Before, shape.After, ms(f50), ms(f99))
	fmt.Fprintf(os.Stdout, "  Airlock's own work beyond Temporal's: p50 %.1f ms\n", ms(c50-r50-f50))
	b.ReportMetric(ms(c50-r50), "overhead-p50-ms")
	b.ReportMetric(ms(f50), "temporal-floor-p50-ms")
}

// rawAction makes the calls of one action directly, as a bare program would.
func rawAction(ctx context.Context, acts *activities.Activities, jobs *k8s.Runner, in activities.StageInput) error {
	spec := activities.JobSpec(in, acts.JobVaultAddr)
	job, err := jobs.CreateJob(ctx, spec)
	if err != nil {
		return err
	}
	cred, err := env.broker.IssueToken(ctx, vault.TokenRequest{Policies: in.Action.VaultPolicies, TTL: time.Duration(in.Action.Deadline) + 2*time.Minute})
	if err != nil {
		return err
	}
	if _, err := jobs.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte(cred.Value())}, map[string]string{activities.AnnotationLeaseAccessor: cred.Accessor}); err != nil {
		return err
	}
	if err := jobs.CreateNetworkPolicy(ctx, job, spec.Egress); err != nil {
		return err
	}
	if err := jobs.Start(ctx, ns, job.Name); err != nil {
		return err
	}
	o, err := jobs.Wait(ctx, ns, job.Name, func(string) {})
	if err != nil {
		return err
	}
	if !o.Succeeded {
		return fmt.Errorf("job failed: %s", o.Reason)
	}
	if err := env.broker.Revoke(ctx, cred.Accessor); err != nil {
		return err
	}
	return jobs.Cleanup(ctx, ns, job.Name)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	idx := func(q float64) int {
		i := int(q*float64(len(s))+0.999999) - 1
		return max(0, min(i, len(s)-1))
	}
	return s[idx(0.50)], s[idx(0.99)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkApprovalClickToJob measures, on the real stack, how long a
// correctly signed Slack click takes to become a Job in the apiserver:
// endpoint → signature check → Temporal Update → workflow → StageAction.
// Target p99 ≤ 200 ms. Run: make bench.
func BenchmarkApprovalClickToJob(b *testing.B) {
	ctx := context.Background()
	t := b
	endpoint := approvalEndpointB(b)
	var lat []time.Duration
	stamp := time.Now().UnixNano()
	i := 0
	for b.Loop() {
		b.StopTimer()
		run, err := env.starter.Start(ctx, contract.CycleRequest{AgentID: "e2e-adv", CycleID: fmt.Sprintf("click-%d-%d", stamp, i),
			Actions: []policy.Proposal{{Type: "quick-write", Params: map[string]any{"target": "bench"}}}})
		if err != nil {
			b.Fatal(err)
		}
		i++
		var msg url.Values
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			var ok bool
			if msg, ok = env.slack.message("chat.postMessage", run.WorkflowID); ok {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("no approval message")
			}
		}
		approve := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionApprove))
		jobName := k8s.JobName(run.WorkflowID, 0)
		w, err := env.kube.BatchV1().Jobs("airlock-e2e-adv").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + jobName})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if resp := click(t, endpoint, "U1", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), signingSecret); resp.StatusCode != 200 {
			b.Fatalf("click: %d", resp.StatusCode)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				break
			}
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		w.Stop()
		if _, err := run.Get(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	p50, p99 := percentiles(lat)
	b.ReportMetric(ms(p50), "click-to-job-p50-ms")
	b.ReportMetric(ms(p99), "click-to-job-p99-ms")
	fmt.Fprintf(os.Stdout, "\nsigned Slack click → Job in the apiserver, n=%d: p50 %.1f ms  p99 %.1f ms  (target p99 <= 200 ms)\n", len(lat), ms(p50), ms(p99))
}

func approvalEndpointB(b *testing.B) string {
	h, err := approval.NewHandler(approval.HandlerConfig{SigningSecret: signingSecret, Decider: approval.DeciderFunc(env.starter.Decide)})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(func() { srv.Close(); h.Close() })
	return srv.URL + "/slack/interactions"
}
