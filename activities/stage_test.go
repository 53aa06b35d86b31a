package activities_test

import (
	"os"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(devstack.Main(m, devstack.Options{Vault: true, Kube: true}, &stack))
}

const catalogYAML = `
actions:
  - name: write
    image: docker.io/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
    command: ["true"]
    class: write
    risk: low
    vault_policies: [airlock-stage-write]
    deadline: 1m
  - name: read-config
    image: docker.io/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
    command: ["true"]
    class: read
    risk: low
    vault_policies: [airlock-stage-read]
    vault_kv:
      API_TOKEN: secret/airlock/airlock-stage-read/api#missing-key
    deadline: 1m
agents:
  - id: stager
    owner: tests
    approvers: [U1]
    namespace: airlock-stage
    actions: [write, read-config]
    phases: {read: autonomous, write: autonomous}
`

type fixture struct {
	acts *activities.Activities
	kube kubernetes.Interface
	root *api.Client
	env  *testsuite.TestActivityEnvironment
	cat  *policy.Catalog
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	cat, err := policy.Parse("stage catalog", []byte(catalogYAML))
	require.NoError(t, err)
	broker, err := vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken})
	require.NoError(t, err)
	kube, err := kubernetes.NewForConfig(stack.RestConfig)
	require.NoError(t, err)
	jobs := k8s.NewRunner(kube)
	require.NoError(t, devsetup.Prepare(ctx, cat, broker, jobs))
	cfg := api.DefaultConfig()
	cfg.Address = stack.VaultAddr
	root, err := api.NewClient(cfg)
	require.NoError(t, err)
	root.SetToken(stack.VaultToken)
	_, err = root.KVv2("secret").Put(ctx, "airlock/airlock-stage-read/api", map[string]any{"token": "kv-secret-value"})
	require.NoError(t, err)

	acts := &activities.Activities{Catalog: cat, Broker: broker, Jobs: jobs, LeaseFuse: 5 * time.Second, ActionTokenTTL: time.Minute}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return &fixture{acts: acts, kube: kube, root: root, env: env, cat: cat}
}

func (f *fixture) input(t *testing.T, action string) activities.StageInput {
	t.Helper()
	plan, err := f.cat.Plan("stager", []policy.Proposal{{Type: action}})
	require.NoError(t, err)
	return activities.StageInput{
		WorkflowID: "cycle/stager/" + t.Name() + "-" + time.Now().Format("150405.000000"),
		AgentID:    "stager", Namespace: "airlock-stage", Action: plan.Actions[0],
	}
}

// liveTokens lists the still valid tokens Vault holds for a Job (by the
// metadata staging gives every action token).
func (f *fixture) liveTokens(t *testing.T, job string) []string {
	t.Helper()
	s, err := f.root.Logical().List("auth/token/accessors")
	require.NoError(t, err)
	var out []string
	for _, k := range s.Data["keys"].([]any) {
		l, err := f.root.Auth().Token().LookupAccessor(k.(string))
		if err != nil {
			continue
		}
		if meta, _ := l.Data["meta"].(map[string]any); meta["job"] == job {
			out = append(out, k.(string))
		}
	}
	return out
}

func (f *fixture) stage(in activities.StageInput) (activities.StageOutput, error) {
	var out activities.StageOutput
	v, err := f.env.ExecuteActivity(f.acts.StageAction, in)
	if err == nil {
		err = v.Get(&out)
	}
	return out, err
}

func (f *fixture) job(_ *testing.T, in activities.StageInput) string {
	return k8s.JobName(in.WorkflowID, in.Action.Index)
}

func TestStageExtendsTheFuseOnlyOnceRecorded(t *testing.T) {
	f := newFixture(t)
	in := f.input(t, "write")
	out, err := f.stage(in)
	require.NoError(t, err)
	sec, err := f.kube.CoreV1().Secrets(in.Namespace).Get(t.Context(), k8s.SecretName(out.JobName), metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, out.LeaseAccessor, sec.Annotations[activities.AnnotationLeaseAccessor], "the accessor is recorded in the Job's Secret")
	l, err := f.acts.Broker.Lookup(t.Context(), out.LeaseAccessor)
	require.NoError(t, err)
	assert.Greater(t, l.TTL, 30*time.Second, "extended past the 5 s fuse to the working TTL")
	assert.LessOrEqual(t, l.TTL, time.Minute)
	assert.Equal(t, []string{out.LeaseAccessor}, f.liveTokens(t, out.JobName), "exactly one live token")
}

func TestStageMissingKVKeyRevokesAndFailsPermanently(t *testing.T) {
	f := newFixture(t)
	in := f.input(t, "read-config")
	_, err := f.stage(in)
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, contract.ErrTypeInvalidAction, appErr.Type())
	assert.True(t, appErr.NonRetryable())
	assert.Contains(t, err.Error(), `no key "missing-key"`)
	assert.NotContains(t, err.Error(), "kv-secret-value")
	assert.Empty(t, f.liveTokens(t, f.job(t, in)), "the token leased for it is revoked")
	_, err = f.kube.CoreV1().Secrets(in.Namespace).Get(t.Context(), k8s.SecretName(f.job(t, in)), metav1.GetOptions{})
	assert.True(t, isNotFound(err), "no Secret written")
}

func TestStageSecretCreateFailingRevokes(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	in := f.input(t, "write")
	// A namespace whose quota admits no Secret: the Job and the lease are
	// created, the Secret is refused by the apiserver.
	in.Namespace = "airlock-stage-nosecrets"
	_, err := f.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: in.Namespace}}, metav1.CreateOptions{})
	if !k8serrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	_, err = f.kube.CoreV1().ResourceQuotas(in.Namespace).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-secrets"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceSecrets: resource.MustParse("0")}},
	}, metav1.CreateOptions{})
	if !k8serrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { // the quota controller must have counted
		q, err := f.kube.CoreV1().ResourceQuotas(in.Namespace).Get(ctx, "no-secrets", metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil
	}, 30*time.Second, 50*time.Millisecond)
	_, err = f.stage(in)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exceeded quota")
	assert.Empty(t, f.liveTokens(t, f.job(t, in)), "the token leased for it is revoked")
}

// A Secret of the Job's name that the Job does not own is neither reused
// nor deleted: staging refuses, leasing nothing.
func TestStageRefusesAForeignSecret(t *testing.T) {
	f := newFixture(t)
	in := f.input(t, "write")
	_, err := f.kube.CoreV1().Secrets(in.Namespace).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: k8s.SecretName(f.job(t, in)), Namespace: in.Namespace},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = f.stage(in)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	assert.Equal(t, activities.ErrTypeJobConflict, appErr.Type())
	assert.Empty(t, f.liveTokens(t, f.job(t, in)))
	_, err = f.kube.CoreV1().Secrets(in.Namespace).Get(t.Context(), k8s.SecretName(f.job(t, in)), metav1.GetOptions{})
	assert.NoError(t, err, "the foreign Secret is left alone")
}

// A worker killed after recording its lease on the Job but before writing
// the Secret: the retry revokes the recorded token and leases a new one.
func TestStageRetryRevokesARecordedLeaseWithoutSecret(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	in := f.input(t, "write")
	spec := activities.JobSpec(in, "")
	job, err := f.acts.Jobs.CreateJob(ctx, spec)
	require.NoError(t, err)
	orphan, err := f.acts.Broker.IssueToken(ctx, vault.TokenRequest{Policies: []string{"airlock-stage-write"}, TTL: time.Minute,
		Metadata: map[string]string{"job": job.Name}})
	require.NoError(t, err)
	require.NoError(t, f.acts.Jobs.Annotate(ctx, job, map[string]string{activities.AnnotationLeaseAccessor: orphan.Accessor}))

	out, err := f.stage(in)
	require.NoError(t, err)
	assert.NotEqual(t, orphan.Accessor, out.LeaseAccessor)
	assert.Equal(t, []string{out.LeaseAccessor}, f.liveTokens(t, job.Name), "the earlier attempt's token is revoked")
}

// A Secret whose token died (its fuse ran out, or it was revoked) is not
// reused: it is replaced with a live lease.
func TestStageRetryReplacesASecretWithADeadToken(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	in := f.input(t, "write")
	first, err := f.stage(in)
	require.NoError(t, err)
	require.NoError(t, f.acts.Broker.Revoke(ctx, first.LeaseAccessor))

	second, err := f.stage(in)
	require.NoError(t, err)
	assert.NotEqual(t, first.LeaseAccessor, second.LeaseAccessor)
	sec, err := f.kube.CoreV1().Secrets(in.Namespace).Get(ctx, second.SecretName, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, second.LeaseAccessor, sec.Annotations[activities.AnnotationLeaseAccessor])

	// And a live one is reused, not leased twice.
	third, err := f.stage(in)
	require.NoError(t, err)
	assert.Equal(t, second.LeaseAccessor, third.LeaseAccessor)
	assert.Len(t, f.liveTokens(t, second.JobName), 1)
}

// A worker killed after writing the Secret but before extending its token
// past the fuse: the retry extends that token and reuses it; nothing is
// leased twice.
func TestStageRetryExtendsARecordedTokenStillOnItsFuse(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	in := f.input(t, "write")
	job, err := f.acts.Jobs.CreateJob(ctx, activities.JobSpec(in, ""))
	require.NoError(t, err)
	onFuse, err := f.acts.Broker.IssueToken(ctx, vault.TokenRequest{Policies: []string{"airlock-stage-write"}, TTL: time.Minute,
		InitialTTL: 5 * time.Second, Metadata: map[string]string{"job": job.Name}})
	require.NoError(t, err)
	_, err = f.acts.Jobs.CreateSecret(ctx, job, map[string][]byte{"VAULT_TOKEN": []byte(onFuse.Value())},
		map[string]string{activities.AnnotationLeaseAccessor: onFuse.Accessor})
	require.NoError(t, err)

	out, err := f.stage(in)
	require.NoError(t, err)
	assert.Equal(t, onFuse.Accessor, out.LeaseAccessor, "the recorded token is reused")
	l, err := f.acts.Broker.Lookup(ctx, onFuse.Accessor)
	require.NoError(t, err)
	assert.Greater(t, l.TTL, 30*time.Second, "and extended past its fuse")
	assert.Equal(t, []string{onFuse.Accessor}, f.liveTokens(t, job.Name))
}

// ReleaseAction without an accessor (staging never reported back) finds
// the lease through the Job when no Secret was written.
func TestReleaseFindsTheLeaseRecordedOnTheJob(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	in := f.input(t, "write")
	job, err := f.acts.Jobs.CreateJob(ctx, activities.JobSpec(in, ""))
	require.NoError(t, err)
	tok, err := f.acts.Broker.IssueToken(ctx, vault.TokenRequest{Policies: []string{"airlock-stage-write"}, TTL: time.Minute,
		Metadata: map[string]string{"job": job.Name}})
	require.NoError(t, err)
	require.NoError(t, f.acts.Jobs.Annotate(ctx, job, map[string]string{activities.AnnotationLeaseAccessor: tok.Accessor}))

	v, err := f.env.ExecuteActivity(f.acts.ReleaseAction, activities.ReleaseInput{Namespace: in.Namespace, JobName: job.Name})
	require.NoError(t, err)
	var out activities.ReleaseOutput
	require.NoError(t, v.Get(&out))
	assert.Equal(t, tok.Accessor, out.RevokedAccessor)
	assert.Empty(t, f.liveTokens(t, job.Name))
}

func isNotFound(err error) bool { return k8serrors.IsNotFound(err) }

// An activity heartbeats three times per heartbeat timeout (never more
// often than once a second); a local activity, or one without a heartbeat
// timeout, sends none: every heartbeat is a write on the server.
func TestHeartbeatInterval(t *testing.T) {
	for _, c := range []struct {
		info activity.Info
		want time.Duration
	}{
		{activity.Info{HeartbeatTimeout: 30 * time.Second}, 10 * time.Second},
		{activity.Info{HeartbeatTimeout: 10 * time.Second}, 10 * time.Second / 3},
		{activity.Info{HeartbeatTimeout: 2 * time.Second}, time.Second},
		{activity.Info{}, 0},
		{activity.Info{HeartbeatTimeout: 30 * time.Second, IsLocalActivity: true}, 0},
	} {
		assert.Equal(t, c.want, activities.HeartbeatEvery(c.info), "%+v", c.info)
	}
}
