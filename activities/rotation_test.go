package activities_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/k8s"
)

func TestRotationDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		maxLife  time.Duration // 0: no explicit max TTL
		jobEnd   time.Duration
		rotateAt float64
		wantAt   time.Duration
		want     bool
	}{
		"outlives the job":                {maxLife: 3 * time.Minute, jobEnd: time.Minute, rotateAt: 2.0 / 3},
		"ends exactly with the job":       {maxLife: time.Minute, jobEnd: time.Minute, rotateAt: 2.0 / 3},
		"no explicit max":                 {jobEnd: time.Hour, rotateAt: 2.0 / 3},
		"role caps it below the deadline": {maxLife: 2 * time.Hour, jobEnd: 6 * time.Hour, rotateAt: 2.0 / 3, wantAt: 80 * time.Minute, want: true},
		"small test ttl":                  {maxLife: 15 * time.Second, jobEnd: 2 * time.Minute, rotateAt: 2.0 / 3, wantAt: 10 * time.Second, want: true},
		"half way":                        {maxLife: time.Minute, jobEnd: time.Hour, rotateAt: 0.5, wantAt: 30 * time.Second, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var hard time.Time
			if tc.maxLife > 0 {
				hard = t0.Add(tc.maxLife)
			}
			at, ok := activities.RotationDue(t0, hard, t0.Add(tc.jobEnd), tc.rotateAt)
			assert.Equal(t, tc.want, ok)
			if tc.want {
				assert.Equal(t, t0.Add(tc.wantAt), at)
			}
		})
	}
}

func hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// A Job that outlives its credential's max TTL has it replaced: the Secret
// holds the next token (another value, a valid token), lists both while the
// old one is in its grace, and releasing the action revokes both.
func TestRotationReplacesTheCredentialAndReleaseRevokesAll(t *testing.T) {
	f := newFixture(t)
	f.acts.CredentialMaxTTL = 40 * time.Second // the action's deadline is 1m
	in := f.input(t, "write")
	out, err := f.stage(in)
	require.NoError(t, err)
	run := activities.RunInput{Namespace: out.Namespace, JobName: out.JobName, LeaseAccessor: out.LeaseAccessor}

	looked, err := f.acts.Broker.Lookup(t.Context(), out.LeaseAccessor)
	require.NoError(t, err)
	assert.Equal(t, 40*time.Second, looked.MaxTTL, "the token is capped")
	due, err := activities.RotationPlan(t.Context(), f.acts, run)
	require.NoError(t, err)
	assert.WithinDuration(t, looked.IssuedAt.Add(26*time.Second), due, 2*time.Second, "rotated at 2/3 of its life")

	before := f.secret(t, out)
	require.NoError(t, activities.RotateOnce(t.Context(), f.acts, run))
	after := f.secret(t, out)

	next := after.Annotations[activities.AnnotationLeaseAccessor]
	assert.NotEqual(t, out.LeaseAccessor, next)
	assert.NotEqual(t, hash(before.Data["VAULT_TOKEN"]), hash(after.Data["VAULT_TOKEN"]), "the secret holds another token")
	assert.Equal(t, out.LeaseAccessor+","+next, after.Annotations[activities.AnnotationLeaseAccessors])
	assert.ElementsMatch(t, []string{out.LeaseAccessor, next}, f.liveTokens(t, out.JobName), "the old token is in its grace")
	// (Action tokens carry no default policy: Vault's root looks it up.)
	self, err := f.root.Auth().Token().LookupWithContext(t.Context(), string(after.Data["VAULT_TOKEN"]))
	require.NoError(t, err, "the new token is valid")
	assert.Equal(t, next, self.Data["accessor"], "and is the one recorded")

	// The cycle knows only the first accessor; release finds the rest.
	_, err = f.env.ExecuteActivity(f.acts.ReleaseAction, activities.ReleaseInput{Namespace: out.Namespace, JobName: out.JobName, LeaseAccessor: out.LeaseAccessor})
	require.NoError(t, err)
	assert.Empty(t, f.liveTokens(t, out.JobName))
}

// A worker killed mid-rotation, after it issued the next token but before
// delivering it, leaves that token recorded on the Secret: releasing the
// action revokes it with the rest.
func TestRotationKilledMidwayLeavesNothingAfterRelease(t *testing.T) {
	f := newFixture(t)
	f.acts.CredentialMaxTTL = 40 * time.Second
	activities.SetRotationHook(f.acts, func(step string) bool { return step == "recorded" })
	in := f.input(t, "write")
	out, err := f.stage(in)
	require.NoError(t, err)
	run := activities.RunInput{Namespace: out.Namespace, JobName: out.JobName, LeaseAccessor: out.LeaseAccessor}
	before := f.secret(t, out)

	require.Error(t, activities.RotateOnce(t.Context(), f.acts, run))
	after := f.secret(t, out)
	live := f.liveTokens(t, out.JobName)
	require.Len(t, live, 2, "the new token was issued and left behind")
	assert.Equal(t, out.LeaseAccessor, after.Annotations[activities.AnnotationLeaseAccessor], "not delivered")
	assert.Equal(t, hash(before.Data["VAULT_TOKEN"]), hash(after.Data["VAULT_TOKEN"]))
	for _, acc := range live {
		assert.Contains(t, after.Annotations[activities.AnnotationLeaseAccessors], acc, "every live token is recorded")
	}

	_, err = f.env.ExecuteActivity(f.acts.ReleaseAction, activities.ReleaseInput{Namespace: out.Namespace, JobName: out.JobName, LeaseAccessor: out.LeaseAccessor})
	require.NoError(t, err)
	assert.Empty(t, f.liveTokens(t, out.JobName), "zero valid tokens after release")
}

func (f *fixture) secret(t *testing.T, out activities.StageOutput) *corev1.Secret {
	t.Helper()
	s, err := f.kube.CoreV1().Secrets(out.Namespace).Get(t.Context(), k8s.SecretName(out.JobName), metav1.GetOptions{})
	require.NoError(t, err)
	return s
}
