package isolation

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

// BenchmarkRealNodeCycle measures a single-action autonomous cycle whose
// Job runs a real container, against a bare program making the same Vault
// and Kubernetes calls (create Job suspended, lease token, Secret,
// NetworkPolicy, unsuspend, wait, revoke, clean up) for the same action.
// The two alternate so both see the same load. It also prints how long the
// real node took to start. Run:
//
//	go test -run '^$' -bench RealNodeCycle -benchtime 10x ./isolation/
func BenchmarkRealNodeCycle(b *testing.B) {
	if env.skip != "" {
		b.Skipf("no real node here: %s", env.skip)
	}
	ctx := context.Background()
	acts := &activities.Activities{Catalog: env.catalog, Broker: env.broker, Jobs: env.jobs, JobVaultAddr: env.jobVaultAddr}
	props := []policy.Proposal{{Type: "echo-probe", Params: map[string]any{"word": "bench"}}}
	plan, err := env.catalog.Plan(agentID, props)
	if err != nil {
		b.Fatal(err)
	}
	ag, _ := env.catalog.Agent(agentID)
	var cycle, raw []time.Duration
	stamp := time.Now().UnixNano()
	i := 0
	for b.Loop() {
		start := time.Now()
		res, err := env.starter.RunCycle(ctx, contract.CycleRequest{AgentID: agentID, CycleID: fmt.Sprintf("bench-%d-%d", stamp, i), Actions: props})
		if err != nil || res.Outcome != contract.OutcomeSucceeded {
			b.Fatalf("cycle: %v %+v", err, res)
		}
		cycle = append(cycle, time.Since(start))

		start = time.Now()
		in := activities.StageInput{WorkflowID: fmt.Sprintf("raw/%d/%d", stamp, i), AgentID: agentID, Namespace: ag.Namespace, Action: plan.Actions[0]}
		if err := rawAction(ctx, acts, in); err != nil {
			b.Fatalf("raw: %v", err)
		}
		raw = append(raw, time.Since(start))
		i++
	}
	c50, r50 := median(cycle), median(raw)
	b.ReportMetric(ms(c50), "cycle-p50-ms")
	b.ReportMetric(ms(r50), "raw-p50-ms")
	b.ReportMetric(float64(c50)/float64(r50), "ratio-p50")
	times := env.stack.StartTimes()
	node := times["containerd"] + times["kubelet"] + times["kube-router"]
	fmt.Fprintf(os.Stdout, "\nreal node: single-action cycle vs. bare Vault+Kubernetes calls, n=%d\n", len(cycle))
	fmt.Fprintf(os.Stdout, "  cycle p50 %7.1f ms   raw p50 %7.1f ms   ratio %.3fx\n", ms(c50), ms(r50), float64(c50)/float64(r50))
	fmt.Fprintf(os.Stdout, "  node start (containerd + images + kubelet + kube-router, after the control plane): ≈%.1f s; whole stack %.1f s\n",
		node.Seconds(), times["total"].Seconds())
}

// rawAction makes one action's calls directly, as a bare program would.
func rawAction(ctx context.Context, acts *activities.Activities, in activities.StageInput) error {
	spec := activities.JobSpec(in, acts.JobVaultAddr)
	jobs := acts.Jobs
	job, err := jobs.CreateJob(ctx, spec)
	if err != nil {
		return err
	}
	cred, err := acts.Broker.IssueToken(ctx, vault.TokenRequest{Policies: in.Action.VaultPolicies, TTL: time.Duration(in.Action.Deadline) + 2*time.Minute})
	if err != nil {
		return err
	}
	if _, err := jobs.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte(cred.Value())}, map[string]string{activities.AnnotationLeaseAccessor: cred.Accessor}); err != nil {
		return err
	}
	if err := jobs.CreateNetworkPolicy(ctx, job, spec.Egress); err != nil {
		return err
	}
	if err := jobs.Start(ctx, in.Namespace, job.Name); err != nil {
		return err
	}
	o, err := jobs.Wait(ctx, in.Namespace, job.Name, func(string) {})
	if err != nil {
		return err
	}
	if !o.Succeeded {
		return fmt.Errorf("job failed: %s", o.Reason)
	}
	if err := acts.Broker.Revoke(ctx, cred.Accessor); err != nil {
		return err
	}
	return jobs.Cleanup(ctx, in.Namespace, job.Name)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
