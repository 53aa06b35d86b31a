package activities

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
)

// StageInput describes one action to prepare.
type StageInput struct {
	WorkflowID  string                `json:"workflow_id"`
	AgentID     string                `json:"agent_id"`
	Namespace   string                `json:"namespace"`
	Action      policy.RenderedAction `json:"action"`
	TraceParent string                `json:"traceparent,omitempty"`
	// Compensation marks a rollback: counted against the agent's budgets,
	// never refused by them.
	Compensation bool `json:"compensation,omitempty"`
}

// StageOutput names what StageAction created.
type StageOutput struct {
	Namespace     string        `json:"namespace"`
	JobName       string        `json:"job_name"`
	SecretName    string        `json:"secret_name"`
	LeaseAccessor string        `json:"lease_accessor"`
	LeaseTTL      time.Duration `json:"lease_ttl"`
	LeasePolicies []string      `json:"lease_policies"`
	// DBLeaseID is the lease of the dynamic database credentials, if any.
	DBLeaseID string `json:"db_lease_id,omitempty"`
}

// Secret keys (and env vars) of an action's credentials.
const (
	tokenEnv      = "VAULT_TOKEN"
	dbUserEnv     = "DB_USERNAME"
	dbPasswordEnv = "DB_PASSWORD"
)

// JobSpec turns a rendered action into the Job spec that runs it.
// jobVaultAddr is the VAULT_ADDR the container gets. (A function, not a
// method: every exported method of Activities is registered as an activity.)
func JobSpec(in StageInput, jobVaultAddr string) k8s.Spec {
	env := map[string]string{
		"AIRLOCK_AGENT":        in.AgentID,
		"AIRLOCK_WORKFLOW_ID":  in.WorkflowID,
		"AIRLOCK_ACTION_INDEX": strconv.Itoa(in.Action.Index),
		"AIRLOCK_ACTION_TYPE":  in.Action.Type,
	}
	if jobVaultAddr != "" {
		env["VAULT_ADDR"] = jobVaultAddr
	}
	for k, v := range in.Action.Env {
		env[k] = v
	}
	ann := map[string]string{}
	for k, v := range in.Action.PodAnnotations {
		ann[k] = v
	}
	if in.TraceParent != "" {
		ann[k8s.AnnotationTraceparent] = in.TraceParent
	}
	egress := make([]k8s.EgressRule, len(in.Action.Egress))
	for i, e := range in.Action.Egress {
		egress[i] = k8s.EgressRule{CIDR: e.CIDR, Port: e.Port, Protocol: e.Protocol}
	}
	return k8s.Spec{
		Namespace:      in.Namespace,
		AgentID:        in.AgentID,
		WorkflowID:     in.WorkflowID,
		ActionIndex:    in.Action.Index,
		ActionType:     in.Action.Type,
		Image:          in.Action.Image,
		Command:        in.Action.Command,
		Env:            env,
		SecretEnv:      secretEnv(in.Action),
		Egress:         egress,
		CPU:            in.Action.Resources.CPU,
		Memory:         in.Action.Resources.Memory,
		Deadline:       time.Duration(in.Action.Deadline),
		PodAnnotations: ann,
	}
}

// actionLogger is the activity's logger (workflow and run ids, activity)
// with the agent, cycle, action and trace ids added.
func actionLogger(ctx context.Context, agent, cycle string, action int) log.Logger {
	l := log.With(activity.GetLogger(ctx), "agent", agent, "cycle", cycle, "action", action)
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		l = log.With(l, "trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String())
	}
	return l
}

// annotateSpan labels the activity's span so traces can be searched by
// agent, cycle, action and phase.
func annotateSpan(ctx context.Context, in StageInput) {
	trace.SpanFromContext(ctx).SetAttributes(
		attribute.String("airlock.agent", in.AgentID),
		attribute.String("airlock.cycle", in.WorkflowID),
		attribute.Int("airlock.action.index", in.Action.Index),
		attribute.String("airlock.action.type", in.Action.Type),
		attribute.String("airlock.phase", string(in.Action.Decision.Phase)),
		attribute.String("airlock.mode", string(in.Action.Decision.Mode)),
	)
}

func secretEnv(a policy.RenderedAction) []string {
	env := []string{tokenEnv}
	if a.VaultDBRole != "" {
		env = append(env, dbUserEnv, dbPasswordEnv)
	}
	return append(env, slices.Sorted(maps.Keys(a.VaultKV))...)
}

// issueToken leases the action's token: a child of its agent's token when
// agent tokens are configured.
func (a *Activities) issueToken(ctx context.Context, agentID string, req vault.TokenRequest) (vault.Credential, error) {
	if a.Agents != nil {
		return a.Agents.IssueActionToken(ctx, agentID, req)
	}
	return a.Broker.IssueToken(ctx, req)
}

// StageAction prepares one action without starting it: the Job (suspended),
// a Vault token leased for it and written into the Job's Secret, and the
// NetworkPolicy. First it takes a running-Job hold on the agent's budgets
// (running_jobs, actions_per_hour): over budget it fails with
// ErrTypeBudgetExhausted and nothing is created or leased. It is idempotent
// and crash-safe: the hold is per action, the suspended Job is the durable
// intent, its Secret records the lease before the token outlives its fuse,
// and a retry reuses a live recorded lease or revokes a dead or half-staged
// one before leasing anew (see lease).
func (a *Activities) StageAction(ctx context.Context, in StageInput) (StageOutput, error) {
	hb := startHeartbeat(ctx)
	defer hb.stop()
	annotateSpan(ctx, in)
	if in.TraceParent == "" {
		// The Job continues this activity's trace (TRACEPARENT + annotation).
		in.TraceParent = telemetry.TraceParent(ctx)
	}
	spec := JobSpec(in, a.JobVaultAddr)
	// The budget hold is asked for while the suspended Job (which runs
	// nothing) is created; nothing is leased before both are in place, and a
	// refusal removes the Job, so an action over budget leaves nothing.
	// (Leasing meanwhile was tried: under load the hold can take longer
	// than the token's fuse, and every staging then failed and retried.)
	reserved := make(chan error, 1)
	go func() {
		reserved <- a.reserve(ctx, contract.ReserveRequest{
			BudgetHold:   contract.BudgetHold{AgentID: in.AgentID, WorkflowID: in.WorkflowID, Index: in.Action.Index, Kind: policy.BudgetRun},
			Until:        time.Now().Add(time.Duration(in.Action.Deadline) + HoldGrace),
			Compensation: in.Compensation,
		})
	}()
	job, created, err := a.Jobs.CreateOrGetJob(ctx, spec)
	// Only an earlier attempt (whose Job this call found) can have left a
	// Secret: the Secret is owned by the Job and written after it.
	var found struct {
		sec *corev1.Secret
		err error
	}
	if err == nil && !created {
		found.sec, found.err = a.Jobs.GetSecret(ctx, spec.Namespace, k8s.SecretName(job.Name))
	}
	if rerr := <-reserved; rerr != nil {
		// Refused or not answered: the Job goes unless an earlier attempt
		// recorded a lease on it (then it stays for the retry to revoke or
		// reuse). Without one it is an empty suspended object.
		if err == nil && job.Annotations[AnnotationLeaseAccessor] == "" && found.sec == nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if derr := a.Jobs.Delete(dctx, job.Namespace, job.Name); derr != nil {
				// Suspended and lease-less, it runs nothing; the refusal
				// (its error type decides retries) is what the cycle needs.
				actionLogger(ctx, in.AgentID, in.WorkflowID, in.Action.Index).Warn("remove the job of an action without a budget hold", "job", job.Name, "error", derr)
			}
		}
		return StageOutput{}, rerr
	}
	if err != nil {
		if errors.Is(err, k8s.ErrImageNotPinned) {
			return StageOutput{}, permanent(contract.ErrTypeInvalidAction, err)
		}
		var conflict *k8s.JobConflictError
		if errors.As(err, &conflict) {
			return StageOutput{}, permanent(ErrTypeJobConflict, err)
		}
		if k8serrors.IsInvalid(err) {
			// The apiserver refuses this Job as rendered: retrying cannot help.
			return StageOutput{}, permanent(contract.ErrTypeInvalidAction, err)
		}
		return StageOutput{}, err
	}
	out := StageOutput{Namespace: job.Namespace, JobName: job.Name, SecretName: k8s.SecretName(job.Name), LeasePolicies: in.Action.VaultPolicies}

	// The Job's NetworkPolicy does not depend on its lease: written meanwhile.
	netpol := make(chan error, 1)
	go func() { netpol <- a.Jobs.CreateNetworkPolicy(ctx, job, spec.Egress) }()
	if found.err != nil {
		<-netpol
		return StageOutput{}, found.err
	}
	if err := a.leaseOnce(ctx, in, job, found.sec, &out); err != nil {
		<-netpol
		return StageOutput{}, err
	}
	if err := <-netpol; err != nil {
		return StageOutput{}, err
	}
	return out, nil
}

// leaseOnce reuses what an earlier attempt leased for the Job, or leases.
func (a *Activities) leaseOnce(ctx context.Context, in StageInput, job *batchv1.Job, sec *corev1.Secret, out *StageOutput) error {
	log := actionLogger(ctx, in.AgentID, in.WorkflowID, in.Action.Index)
	reused, err := a.reuseLease(ctx, job, sec, out)
	if err != nil {
		return err
	}
	if reused {
		log.Info("reusing lease from a previous attempt", "job", job.Name, "accessor", out.LeaseAccessor)
		return nil
	}
	if err := a.lease(ctx, in, job, out); err != nil {
		return err
	}
	log.Info("leased credentials", "job", job.Name, "accessor", out.LeaseAccessor, "ttl", out.LeaseTTL)
	return nil
}

// reuseLease looks for what an earlier attempt leased for this Job. A
// complete Secret whose token is still valid is reused. Anything else an
// attempt left — a Secret whose token is dead, an accessor recorded on the
// Job whose Secret was never written — is revoked and removed, and the
// caller leases anew.
func (a *Activities) reuseLease(ctx context.Context, job *batchv1.Job, sec *corev1.Secret, out *StageOutput) (bool, error) {
	if sec != nil && !k8s.OwnedBy(sec, job) {
		// Not ours to reuse or delete: someone else's object has the name.
		return false, permanent(ErrTypeJobConflict, fmt.Errorf("secret %s/%s exists and is not owned by job %s", sec.Namespace, sec.Name, job.Name))
	}
	if sec != nil {
		if acc := sec.Annotations[AnnotationLeaseAccessor]; acc != "" {
			// Alive: extended now, since the attempt that wrote the Secret
			// may have died before extending it past its fuse.
			ttl, err := a.Broker.Renew(ctx, vault.TokenLease(acc), a.actionTokenTTL())
			if err == nil {
				out.LeaseAccessor, out.LeaseTTL = acc, ttl
				out.DBLeaseID = sec.Annotations[AnnotationDBLease]
				return true, nil
			} else if !errors.Is(err, vault.ErrNotFound) {
				return false, fmt.Errorf("extend recorded lease: %w", err)
			}
		}
		// Its token died before it was extended: start over. Its database
		// lease, if any, goes explicitly rather than trusting the token's
		// death to take it.
		if l := sec.Annotations[AnnotationDBLease]; l != "" {
			if err := a.Broker.RevokeLease(ctx, l); err != nil {
				return false, fmt.Errorf("revoke an earlier attempt's database lease: %w", err)
			}
			a.Metrics.LeaseRevoked(ctx, "database")
		}
		if err := a.Jobs.DeleteSecret(ctx, job.Namespace, job.Name, sec.UID); err != nil {
			return false, err
		}
	}
	if acc := job.Annotations[AnnotationLeaseAccessor]; acc != "" {
		if err := a.Broker.Revoke(ctx, acc); err != nil {
			return false, fmt.Errorf("revoke an earlier attempt's lease: %w", err)
		}
		a.Metrics.LeaseRevoked(ctx, "token")
	}
	return false, nil
}

// lease issues the action's token and writes it, with any KV values and
// dynamic database credentials read with it, into the Job's Secret. The
// token is issued on a short fuse (LeaseFuse) and extended to its working
// TTL only once its accessor is recorded — by the Secret, or for an action
// with database credentials first on the Job — so a worker killed at any
// point leaves either a recorded lease (a retry reuses or revokes it,
// ReleaseAction revokes it) or a token that dies within the fuse. On any
// error the token is revoked before returning.
// (Until this release every action's accessor was first recorded on the
// Job: one more apiserver write per action, the slowest call of staging
// under load. Such a record is still honoured: see reuseLease.)
func (a *Activities) lease(ctx context.Context, in StageInput, job *batchv1.Job, out *StageOutput) (err error) {
	req := leaseRequestFor(in)
	cred, err := a.issueToken(ctx, in.AgentID, a.tokenRequest(in, job))
	if err != nil {
		a.Metrics.LeaseFailed(ctx, "token")
		return fmt.Errorf("lease credentials: %w", err)
	}
	a.Metrics.LeaseIssued(ctx, "token")
	defer func() {
		if err != nil {
			// Nothing leased here may outlive a failure to hand it to the Job.
			a.revokeUnused(ctx, in, cred)
		}
	}()
	// A dynamic database lease is taken only once the token is recorded (on
	// the Job: its Secret needs the credentials) and extended. Read while
	// the token was still on its fuse, a worker killed in between left a
	// database lease valid after the kill round of the chaos suite, twice,
	// though the token died. Likely cause (not proven): Vault revokes a dead
	// token's leases lazily (ExpirationManager.RevokeByToken marks them
	// expired and its workers revoke them in the background, retrying a
	// failed database revocation), while ReleaseAction revokes a recorded
	// lease at once.
	extended := false
	var ttl time.Duration
	if req.DBRole != "" {
		if err := a.Jobs.Annotate(ctx, job, map[string]string{AnnotationLeaseAccessor: cred.Accessor}); err != nil {
			return err
		}
		if ttl, err = a.Broker.Renew(ctx, vault.TokenLease(cred.Accessor), a.actionTokenTTL()); err != nil {
			return fmt.Errorf("extend lease: %w", err)
		}
		extended = true
	}
	data, dbLease, err := a.readCredentials(ctx, cred, req.KV, req.DBRole)
	var missing *missingKeyError
	if errors.As(err, &missing) {
		return permanent(contract.ErrTypeInvalidAction, err)
	}
	if err != nil {
		return err
	}
	// The request lets RunJob issue the next credentials of a Job that
	// outlives these (rotation.go).
	ann := map[string]string{AnnotationLeaseAccessor: cred.Accessor, AnnotationLeaseTTL: a.actionTokenTTL().String(), AnnotationLeaseRequest: req.annotation()}
	if dbLease != "" {
		ann[AnnotationDBLease] = dbLease
		out.DBLeaseID = dbLease
	}
	sec, err := a.Jobs.CreateSecret(ctx, job, data, ann)
	if errors.Is(err, k8s.ErrForeignSecret) {
		return permanent(ErrTypeJobConflict, err)
	}
	if err != nil {
		return err
	}
	if got := sec.Annotations[AnnotationLeaseAccessor]; got != cred.Accessor {
		// A concurrent attempt wrote the Secret first: the next attempt
		// sorts out which lease is alive.
		return fmt.Errorf("stage: secret %s holds another attempt's lease", sec.Name)
	}
	if !extended {
		if ttl, err = a.Broker.Renew(ctx, vault.TokenLease(cred.Accessor), a.actionTokenTTL()); err != nil {
			// Revoked below; the retry finds the Secret's token dead and starts over.
			return fmt.Errorf("extend lease: %w", err)
		}
	}
	out.LeaseAccessor, out.LeaseTTL, out.LeasePolicies = cred.Accessor, ttl, cred.Policies
	return nil
}

// leaseRequestFor is what an action's lease asks for. Read actions (all
// that ever runs in shadow) get the read-only role.
func leaseRequestFor(in StageInput) leaseRequest {
	return leaseRequest{
		Policies: in.Action.VaultPolicies,
		ReadOnly: in.Action.Class == policy.ClassRead || in.Action.Decision.Phase == policy.PhaseShadow,
		KV:       in.Action.VaultKV,
		DBRole:   in.Action.VaultDBRole,
	}
}

// tokenRequest issues the action's token on its short fuse, named after
// the Job it is for.
func (a *Activities) tokenRequest(in StageInput, job *batchv1.Job) vault.TokenRequest {
	req := leaseRequestFor(in)
	return vault.TokenRequest{
		Policies: req.Policies,
		// Capped: a Job that outlives it gets its credentials rotated.
		TTL:         a.credentialTTL(time.Duration(in.Action.Deadline) + a.leaseMargin()),
		InitialTTL:  a.leaseFuse(),
		DisplayName: "airlock-" + in.AgentID,
		ReadOnly:    req.ReadOnly,
		Metadata: map[string]string{
			"agent": in.AgentID, "workflow_id": in.WorkflowID,
			"action_index": strconv.Itoa(in.Action.Index), "job": job.Name,
		},
	}
}

// revokeUnused revokes a token nothing was handed (and every lease it took).
func (a *Activities) revokeUnused(ctx context.Context, in StageInput, cred vault.Credential) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := a.Broker.Revoke(rctx, cred.Accessor); err != nil {
		actionLogger(ctx, in.AgentID, in.WorkflowID, in.Action.Index).Warn("revoke unused token", "accessor", cred.Accessor, "error", err)
		return
	}
	a.Metrics.LeaseRevoked(ctx, "token")
}

// RunInput names a staged Job to start.
type RunInput struct {
	Namespace  string `json:"namespace"`
	JobName    string `json:"job_name"`
	ActionType string `json:"action_type,omitempty"` // for metrics
	// LeaseAccessor and DBLeaseID are kept alive while the Job runs.
	LeaseAccessor string `json:"lease_accessor,omitempty"`
	DBLeaseID     string `json:"db_lease_id,omitempty"`
}

// RunOutput is how a Job ended.
type RunOutput struct {
	Succeeded  bool      `json:"succeeded"`
	Reason     string    `json:"reason,omitempty"`
	ExitCode   int32     `json:"exit_code"`
	Output     string    `json:"output,omitempty"`
	PodName    string    `json:"pod_name,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// RunJob starts a staged Job and waits for it to finish, heartbeating so a
// lost worker is noticed and a cancelled workflow reaches it.
func (a *Activities) RunJob(ctx context.Context, in RunInput) (RunOutput, error) {
	trace.SpanFromContext(ctx).SetAttributes(
		attribute.String("airlock.job", in.Namespace+"/"+in.JobName),
		attribute.String("airlock.action.type", in.ActionType),
		attribute.String("airlock.lease.accessor", in.LeaseAccessor),
	)
	// Heartbeats go out on their own schedule: a slow apiserver delays
	// the calls below, never the proof that this worker is alive.
	hb := startHeartbeat(ctx)
	defer hb.stop()
	if err := a.Jobs.Start(ctx, in.Namespace, in.JobName); err != nil {
		return RunOutput{}, err
	}
	// Keep the action's credentials alive (about every third of their TTL)
	// while the Job runs, and rotate them if the Job outlives what they may
	// live (rotation.go).
	if in.LeaseAccessor != "" || in.DBLeaseID != "" {
		stop := a.keepCredentials(ctx, in)
		defer stop()
	}
	o, err := a.Jobs.Wait(ctx, in.Namespace, in.JobName, nil)
	if err != nil {
		return RunOutput{}, err
	}
	outcome := telemetry.OutcomeFailed
	if o.Succeeded {
		outcome = telemetry.OutcomeSucceeded
	}
	if !o.StartedAt.IsZero() && !o.FinishedAt.IsZero() {
		a.Metrics.JobDuration(ctx, in.ActionType, o.FinishedAt.Sub(o.StartedAt), o.Succeeded)
	}
	a.Metrics.ActionFinished(ctx, in.ActionType, outcome)
	return RunOutput{
		Succeeded: o.Succeeded, Reason: o.Reason, ExitCode: o.ExitCode, Output: o.Message,
		PodName: o.PodName, StartedAt: o.StartedAt, FinishedAt: o.FinishedAt,
	}, nil
}

// ReleaseInput names an action whose credentials and objects to release.
type ReleaseInput struct {
	Namespace string `json:"namespace"`
	JobName   string `json:"job_name"`
	// LeaseAccessor may be empty when staging did not report back; the
	// accessor is then read from the Job's Secret.
	LeaseAccessor string `json:"lease_accessor,omitempty"`
	DBLeaseID     string `json:"db_lease_id,omitempty"`
	// DeleteJob also removes the Job and its Pods (cancellation, kill).
	DeleteJob bool `json:"delete_job,omitempty"`
	// AgentID, WorkflowID and Index name the running-Job hold staging took
	// on the agent's budgets; released once everything else is.
	AgentID    string `json:"agent_id,omitempty"`
	WorkflowID string `json:"workflow_id,omitempty"`
	Index      int    `json:"index,omitempty"`
}

// ReleaseOutput says what was released.
type ReleaseOutput struct {
	RevokedAccessor string `json:"revoked_accessor,omitempty"`
}

// ReleaseAction revokes the action's token and removes its Secret and
// NetworkPolicy (and the Job, if asked), then gives back its running-Job
// hold on the agent's budgets (best effort: see release). It runs on every
// path — success, failure, cancellation, refusal — and is idempotent.
func (a *Activities) ReleaseAction(ctx context.Context, in ReleaseInput) (ReleaseOutput, error) {
	hb := startHeartbeat(ctx)
	defer hb.stop()
	// The Job no longer runs: its budget hold goes back while the lease is
	// revoked (best effort, a signal; the cycle's report releases it too).
	// (A cancelled Job is deleted first, below.)
	hold := contract.BudgetHold{AgentID: in.AgentID, WorkflowID: in.WorkflowID, Index: in.Index, Kind: policy.BudgetRun}
	released := make(chan struct{})
	if in.DeleteJob {
		close(released)
	} else {
		go func() {
			defer close(released)
			a.release(ctx, hold)
		}()
	}
	defer func() { <-released }()
	// The Secret lists every credential of the action that may be alive
	// (staging's, and rotation's: current, being issued, in grace); without
	// a Secret, the accessor staging recorded on the Job first names it.
	sec, err := a.Jobs.GetSecret(ctx, in.Namespace, k8s.SecretName(in.JobName))
	if err != nil {
		return ReleaseOutput{}, err
	}
	var job *batchv1.Job
	if sec == nil {
		if job, err = a.Jobs.GetJob(ctx, in.Namespace, in.JobName); err != nil {
			return ReleaseOutput{}, err
		}
	}
	accessors, dbLeases := recordedLeases(sec, job)
	accessors = splitList(joinList(append([]string{in.LeaseAccessor}, accessors...)...))
	dbLeases = splitList(joinList(append([]string{in.DBLeaseID}, dbLeases...)...))
	for _, l := range dbLeases {
		// Revoking the token revokes it too; this makes it explicit and
		// covers a token revoked earlier by other means.
		if err := a.Broker.RevokeLease(ctx, l); err != nil {
			return ReleaseOutput{}, err
		}
		a.Metrics.LeaseRevoked(ctx, "database")
	}
	for _, acc := range accessors {
		if err := a.Broker.Revoke(ctx, acc); err != nil {
			return ReleaseOutput{}, err
		}
		a.Metrics.LeaseRevoked(ctx, "token")
	}
	var accessor string
	if len(accessors) > 0 {
		accessor = accessors[0]
	}
	if in.DeleteJob {
		if err := a.Jobs.Delete(ctx, in.Namespace, in.JobName); err != nil {
			return ReleaseOutput{}, err
		}
	}
	if err := a.Jobs.Cleanup(ctx, in.Namespace, in.JobName); err != nil {
		return ReleaseOutput{}, err
	}
	if in.DeleteJob {
		a.release(ctx, hold)
	}
	return ReleaseOutput{RevokedAccessor: accessor}, nil
}

// DryRunOutput says whether the apiserver would have admitted an action.
type DryRunOutput struct {
	Admitted bool   `json:"admitted"`
	Reason   string `json:"reason,omitempty"`
}

// DryRunAction asks the apiserver whether it would admit the fully rendered
// Job of a shadow-mode action, without creating anything or leasing
// credentials.
func (a *Activities) DryRunAction(ctx context.Context, in StageInput) (DryRunOutput, error) {
	hb := startHeartbeat(ctx)
	defer hb.stop()
	annotateSpan(ctx, in)
	if in.TraceParent == "" {
		in.TraceParent = telemetry.TraceParent(ctx)
	}
	r, err := a.Jobs.DryRun(ctx, JobSpec(in, a.JobVaultAddr))
	if err != nil {
		return DryRunOutput{}, err
	}
	return DryRunOutput{Admitted: r.Admitted, Reason: r.Reason}, nil
}
