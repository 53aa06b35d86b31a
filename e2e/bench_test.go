package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/workflows"
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
	var cycle, raw []time.Duration
	stamp := time.Now().UnixNano()
	i := 0
	for b.Loop() {
		start := time.Now()
		res, err := env.starter.RunCycle(ctx, workflows.CycleRequest{
			AgentID: "e2e", CycleID: fmt.Sprintf("bench-%d-%d", stamp, i),
			Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "bench"}}},
		})
		if err != nil || res.Outcome != workflows.OutcomeSucceeded {
			b.Fatalf("cycle: %v %+v", err, res)
		}
		cycle = append(cycle, time.Since(start))

		start = time.Now()
		in := activities.StageInput{WorkflowID: fmt.Sprintf("raw/%d/%d", stamp, i), AgentID: "e2e", Namespace: ns, Action: plan.Actions[0]}
		if err := rawAction(ctx, acts, jobs, in); err != nil {
			b.Fatalf("raw: %v", err)
		}
		raw = append(raw, time.Since(start))
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
