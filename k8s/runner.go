package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// ErrNotReady is returned by Start when the Job's NetworkPolicy or Secret is
// missing or incomplete: starting then would break "the NetworkPolicy exists
// before the Pod" or leave the Pod stuck on a missing Secret key.
var ErrNotReady = errors.New("job is not ready to start")

// ErrJobDeleted is returned by Wait when the Job disappears before it
// finished, e.g. because the kill switch deleted it.
var ErrJobDeleted = errors.New("job was deleted before it finished")

// JobConflictError reports that the Job with the deterministic name exists but
// was created for another workflow or action (a hash collision, or a stale
// object). Running it would execute someone else's action.
type JobConflictError struct {
	Namespace, Name string
	// WantWorkflowID/WantActionIndex were asked for, Got* are on the existing Job.
	WantWorkflowID, GotWorkflowID   string
	WantActionIndex, GotActionIndex string
}

func (e *JobConflictError) Error() string {
	return fmt.Sprintf("job %s/%s belongs to workflow %q action %s, not workflow %q action %s",
		e.Namespace, e.Name, e.GotWorkflowID, e.GotActionIndex, e.WantWorkflowID, e.WantActionIndex)
}

// Runner creates, starts, watches and removes action Jobs.
type Runner struct {
	cs                kubernetes.Interface
	pollInterval      time.Duration
	resyncInterval    time.Duration
	deleteGracePeriod time.Duration
	resolver          Resolver
}

// Option configures a Runner. Non-positive durations keep the default.
type Option func(*Runner)

// WithPollInterval sets how often Wait calls progress (so the caller can
// heartbeat) and how soon it retries after the apiserver fails. Default: 10s.
func WithPollInterval(d time.Duration) Option {
	return func(r *Runner) {
		if d > 0 {
			r.pollInterval = d
		}
	}
}

// WithResyncInterval sets how long Wait trusts one watch before it re-reads
// the Job, in case a watch silently stops delivering. Default: 1m.
func WithResyncInterval(d time.Duration) Option {
	return func(r *Runner) {
		if d > 0 {
			r.resyncInterval = d
		}
	}
}

// WithDeleteGracePeriod sets the grace period Delete gives the Pods it
// deletes. Default: 5s (short: Delete is the kill switch, but not a force
// delete, which would forget Pods whose containers still run).
func WithDeleteGracePeriod(d time.Duration) Option {
	return func(r *Runner) {
		if d > 0 {
			r.deleteGracePeriod = d
		}
	}
}

// WithResolver sets how the host name of a Job's VAULT_ADDR is resolved
// into the egress rules that let it reach Vault. Default: net.DefaultResolver.
func WithResolver(res Resolver) Option {
	return func(r *Runner) {
		if res != nil {
			r.resolver = res
		}
	}
}

// NewRunner returns a Runner using cs.
func NewRunner(cs kubernetes.Interface, opts ...Option) *Runner {
	r := &Runner{
		cs:                cs,
		pollInterval:      10 * time.Second,
		resyncInterval:    time.Minute,
		deleteGracePeriod: 5 * time.Second,
		resolver:          net.DefaultResolver,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// CreateJob creates the Job for s, suspended. It is idempotent: if the Job
// already exists for the same workflow and action, the existing one is
// returned; if it exists for another, a *JobConflictError.
func (r *Runner) CreateJob(ctx context.Context, s Spec) (*batchv1.Job, error) {
	job, _, err := r.CreateOrGetJob(ctx, s)
	return job, err
}

// CreateOrGetJob is CreateJob that also says whether this call created the
// Job (false: an earlier attempt had, and may have left more behind).
func (r *Runner) CreateOrGetJob(ctx context.Context, s Spec) (job *batchv1.Job, created bool, err error) {
	want, err := JobFor(s)
	if err != nil {
		return nil, false, err
	}
	jobs := r.cs.BatchV1().Jobs(want.Namespace)
	job, err = jobs.Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		return job, true, nil
	}
	if !k8serrors.IsAlreadyExists(err) {
		return nil, false, fmt.Errorf("create job %s/%s: %w", want.Namespace, want.Name, err)
	}
	job, err = jobs.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("get existing job %s/%s: %w", want.Namespace, want.Name, err)
	}
	if job.Annotations[AnnotationWorkflowID] != s.WorkflowID || job.Labels[LabelActionIndex] != want.Labels[LabelActionIndex] {
		return nil, false, &JobConflictError{
			Namespace: job.Namespace, Name: job.Name,
			WantWorkflowID: s.WorkflowID, GotWorkflowID: job.Annotations[AnnotationWorkflowID],
			WantActionIndex: want.Labels[LabelActionIndex], GotActionIndex: job.Labels[LabelActionIndex],
		}
	}
	if job.DeletionTimestamp != nil {
		// Deleted (killed or cancelled) but not gone yet: never resurrect it.
		return nil, false, fmt.Errorf("create job %s/%s: existing job is being deleted", job.Namespace, job.Name)
	}
	return job, false, nil
}

// ErrForeignSecret: a Secret with the Job's Secret's name exists and is not
// the Job's. Someone else's object is never reused or replaced.
var ErrForeignSecret = errors.New("an existing secret of that name is not owned by the job")

// GetSecret returns the Secret, or (nil, nil) when it does not exist, so a
// retried activity can tell it already leased credentials for this Job.
func (r *Runner) GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	s, err := r.cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if k8serrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s/%s: %w", namespace, name, err)
	}
	return s, nil
}

// CreateSecret creates the Job's Secret (SecretFor). It is idempotent: an
// existing Secret owned by this Job is returned as it is (what it holds is
// recorded in its annotations); one owned by anything else is an error.
func (r *Runner) CreateSecret(ctx context.Context, job *batchv1.Job, data map[string][]byte, annotations map[string]string) (*corev1.Secret, error) {
	if job.UID == "" {
		return nil, fmt.Errorf("create secret for job %s/%s: job has no uid (not created yet?)", job.Namespace, job.Name)
	}
	want := SecretFor(job, data, annotations)
	secrets := r.cs.CoreV1().Secrets(job.Namespace)
	s, err := secrets.Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		return s, nil
	}
	if !k8serrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	s, err = secrets.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get existing secret %s/%s: %w", want.Namespace, want.Name, err)
	}
	if !ownedBy(s.OwnerReferences, job) {
		return nil, fmt.Errorf("create secret %s/%s: %w (job uid %s)", s.Namespace, s.Name, ErrForeignSecret, job.UID)
	}
	return s, nil
}

// CreateNetworkPolicy creates the Job's NetworkPolicy (NetworkPolicyFor) after
// validating the rules. A Job that carries a Vault token also gets egress to
// its VAULT_ADDR (vaultEgress): without it the default-deny policy would cut
// the action off from its own credentials. It is idempotent: an existing
// policy owned by this Job is updated to the given rules; one owned by
// anything else is an error.
func (r *Runner) CreateNetworkPolicy(ctx context.Context, job *batchv1.Job, egress []EgressRule) error {
	if job.UID == "" {
		return fmt.Errorf("create network policy for job %s/%s: job has no uid (not created yet?)", job.Namespace, job.Name)
	}
	if err := validateEgress(egress); err != nil {
		return fmt.Errorf("create network policy for job %s/%s: %w", job.Namespace, job.Name, err)
	}
	want := NetworkPolicyFor(job, withVaultEgress(egress, vaultEgress(ctx, r.resolver, job)))
	policies := r.cs.NetworkingV1().NetworkPolicies(job.Namespace)
	_, err := policies.Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if !k8serrors.IsAlreadyExists(err) {
		return fmt.Errorf("create network policy %s/%s: %w", want.Namespace, want.Name, err)
	}
	got, err := policies.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get existing network policy %s/%s: %w", want.Namespace, want.Name, err)
	}
	if !ownedBy(got.OwnerReferences, job) {
		return fmt.Errorf("create network policy %s/%s: existing policy is not owned by job uid %s", got.Namespace, got.Name, job.UID)
	}
	if equality.Semantic.DeepEqual(got.Spec, want.Spec) {
		return nil
	}
	got.Spec = want.Spec
	if _, err := policies.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update network policy %s/%s: %w", got.Namespace, got.Name, err)
	}
	return nil
}

// Start unsuspends the Job, after checking that its NetworkPolicy exists and,
// if its Pod reads a Secret, that the Secret exists with every key it reads.
// Starting a Job that already runs is a no-op.
func (r *Runner) Start(ctx context.Context, namespace, jobName string) error {
	jobs := r.cs.BatchV1().Jobs(namespace)
	job, err := jobs.Get(ctx, jobName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("start job %s/%s: %w", namespace, jobName, err)
	}
	if job.DeletionTimestamp != nil {
		return fmt.Errorf("start job %s/%s: job is being deleted", namespace, jobName)
	}
	if !ptr.Deref(job.Spec.Suspend, false) {
		return nil
	}
	if err := r.checkReady(ctx, job); err != nil {
		return fmt.Errorf("start job %s/%s: %w", namespace, jobName, err)
	}
	// The uid makes the patch fail rather than start a Job that was
	// deleted and recreated since the checks above.
	patch := fmt.Appendf(nil, `{"metadata":{"uid":%q},"spec":{"suspend":false}}`, job.UID)
	if _, err := jobs.Patch(ctx, jobName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("start job %s/%s: %w", namespace, jobName, err)
	}
	return nil
}

func (r *Runner) checkReady(ctx context.Context, job *batchv1.Job) error {
	np, err := r.cs.NetworkingV1().NetworkPolicies(job.Namespace).Get(ctx, NetworkPolicyName(job.Name), metav1.GetOptions{})
	switch {
	case k8serrors.IsNotFound(err):
		return fmt.Errorf("%w: network policy %s not found", ErrNotReady, NetworkPolicyName(job.Name))
	case err != nil:
		return fmt.Errorf("get network policy: %w", err)
	case !ownedBy(np.OwnerReferences, job):
		return fmt.Errorf("%w: network policy %s is not owned by this job", ErrNotReady, np.Name)
	case !selectsJob(np, job):
		return fmt.Errorf("%w: network policy %s does not select this job's pods", ErrNotReady, np.Name)
	}

	keys := secretKeys(job)
	if len(keys) == 0 {
		return nil
	}
	s, err := r.cs.CoreV1().Secrets(job.Namespace).Get(ctx, SecretName(job.Name), metav1.GetOptions{})
	switch {
	case k8serrors.IsNotFound(err):
		return fmt.Errorf("%w: secret %s not found", ErrNotReady, SecretName(job.Name))
	case err != nil:
		return fmt.Errorf("get secret: %w", err)
	case !ownedBy(s.OwnerReferences, job):
		return fmt.Errorf("%w: secret %s is not owned by this job", ErrNotReady, s.Name)
	}
	for _, k := range keys {
		if _, ok := s.Data[k]; !ok {
			// Only the key name: never a value.
			return fmt.Errorf("%w: secret %s has no key %s", ErrNotReady, s.Name, k)
		}
	}
	return nil
}

// secretKeys lists the keys of the Job's own Secret that its Pod reads.
func secretKeys(job *batchv1.Job) []string {
	var keys []string
	for _, c := range job.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Name == SecretName(job.Name) {
				keys = append(keys, ref.SecretKeyRef.Key)
			}
		}
	}
	return keys
}

// selectsJob reports whether the policy's selector matches the labels the
// Job's Pods get.
func selectsJob(np *networkingv1.NetworkPolicy, job *batchv1.Job) bool {
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() {
		return false
	}
	podLabels := labels.Set{batchv1.JobNameLabel: job.Name, batchv1.ControllerUidLabel: string(job.UID)}
	for k, v := range job.Spec.Template.Labels {
		podLabels[k] = v
	}
	return sel.Matches(podLabels) && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}

func ownedBy(refs []metav1.OwnerReference, job *batchv1.Job) bool {
	for _, ref := range refs {
		if ref.UID == job.UID && ref.Kind == "Job" && ref.Name == job.Name {
			return true
		}
	}
	return false
}

// Cleanup deletes the action's Secret and NetworkPolicy now, so credentials
// do not outlive the action; the Job stays until ttlSecondsAfterFinished for
// inspection. Objects already gone are fine.
func (r *Runner) Cleanup(ctx context.Context, namespace, jobName string) error {
	// Independent objects: deleted at the same time.
	netpol := make(chan error, 1)
	go func() {
		err := r.cs.NetworkingV1().NetworkPolicies(namespace).Delete(ctx, NetworkPolicyName(jobName), metav1.DeleteOptions{})
		if err != nil && !k8serrors.IsNotFound(err) {
			err = fmt.Errorf("delete network policy %s/%s: %w", namespace, NetworkPolicyName(jobName), err)
		} else {
			err = nil
		}
		netpol <- err
	}()
	var errs []error
	err := r.cs.CoreV1().Secrets(namespace).Delete(ctx, SecretName(jobName), metav1.DeleteOptions{})
	if err != nil && !k8serrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete secret %s/%s: %w", namespace, SecretName(jobName), err))
	}
	return errors.Join(append(errs, <-netpol)...)
}

// Delete removes the Job and its Pods now, for cancellation and the kill
// switch. The Job goes with background propagation (its Secret and
// NetworkPolicy follow by garbage collection) and the Pods are deleted
// directly rather than waiting for the garbage collector. Idempotent.
func (r *Runner) Delete(ctx context.Context, namespace, jobName string) error {
	err := r.cs.BatchV1().Jobs(namespace).Delete(ctx, jobName, metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
	})
	if err != nil && !k8serrors.IsNotFound(err) {
		return fmt.Errorf("delete job %s/%s: %w", namespace, jobName, err)
	}
	pods := r.cs.CoreV1().Pods(namespace)
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: jobPodSelector(jobName)})
	if err != nil {
		return fmt.Errorf("list pods of job %s/%s: %w", namespace, jobName, err)
	}
	var errs []error
	for _, p := range list.Items {
		err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To(ceilSeconds(r.deleteGracePeriod)),
			Preconditions:      metav1.NewUIDPreconditions(string(p.UID)),
		})
		if err != nil && !k8serrors.IsNotFound(err) && !k8serrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete pod %s/%s: %w", namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// DeleteAgentJobs deletes every action Job of an agent in namespace (see
// Delete): the kill switch's sweep, which also catches Jobs whose workflow
// is already gone. It returns the names of the Jobs it deleted.
func (r *Runner) DeleteAgentJobs(ctx context.Context, namespace, agentID string) ([]string, error) {
	list, err := r.AgentJobs(ctx, namespace, agentID)
	if err != nil {
		return nil, err
	}
	var names []string
	var errs []error
	for _, name := range list {
		if err := r.Delete(ctx, namespace, name); err != nil {
			errs = append(errs, err)
			continue
		}
		names = append(names, name)
	}
	return names, errors.Join(errs...)
}

// AgentJobs names the action Jobs of an agent in namespace, those being
// deleted included.
func (r *Runner) AgentJobs(ctx context.Context, namespace, agentID string) ([]string, error) {
	sel := labels.Set{LabelManagedBy: ManagedBy, LabelAgent: AgentLabel(agentID)}.String()
	list, err := r.cs.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list jobs of agent %s: %w", agentID, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, j := range list.Items {
		names = append(names, j.Name)
	}
	return names, nil
}

// jobPodSelector selects the Pods of our Job by name; our managed-by label
// keeps it from matching Pods of an unrelated Job with the same name.
func jobPodSelector(jobName string) string {
	return labels.Set{batchv1.JobNameLabel: jobName, LabelManagedBy: ManagedBy}.String()
}

// AgentObjects counts the action Jobs and Pods of an agent still in
// namespace (Pods being deleted included): the kill switch polls it until
// both are zero.
func (r *Runner) AgentObjects(ctx context.Context, namespace, agentID string) (jobs, pods int, err error) {
	sel := labels.Set{LabelManagedBy: ManagedBy, LabelAgent: AgentLabel(agentID)}.String()
	jl, err := r.cs.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return 0, 0, fmt.Errorf("list jobs of agent %s: %w", agentID, err)
	}
	pl, err := r.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return 0, 0, fmt.Errorf("list pods of agent %s: %w", agentID, err)
	}
	return len(jl.Items), len(pl.Items), nil
}
