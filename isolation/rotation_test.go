package isolation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/k8s"
)

// Rotation settings of the suite's worker: a probe's deadline (2m) + margin
// outlives its 24 s credential, which is replaced half way (12 s) and
// revoked 10 s after the Secret holds the next one — before it would have
// expired by itself (24 s), and after the kubelet refreshed the file
// (syncFrequency 5 s, ≤ 7.5 s with jitter; ≈ 8 s observed).
const (
	rotationMaxTTL   = 24 * time.Second
	rotationRotateAt = 0.5
	rotationGrace    = 10 * time.Second
)

// A long Job gets its credential rotated while it runs. From inside the
// container: the token file changes (the kubelet refreshes the Secret
// volume), the new token works against Vault, and the old one is refused
// after the grace — while $VAULT_TOKEN keeps the first value, which is why
// long Jobs must read the file.
func TestCredentialRotationFromInside(t *testing.T) {
	needNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// The tokens the Secret held, as hashes, in order, and when.
	w, err := env.kube.CoreV1().Secrets("airlock-iso").Watch(ctx, metav1.ListOptions{LabelSelector: k8s.LabelManagedBy + "=" + k8s.ManagedBy})
	require.NoError(t, err)
	defer w.Stop()
	var (
		mu     sync.Mutex
		hashes []string
		times  []time.Time
	)
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Secret)
			if !ok || s.Annotations[k8s.AnnotationActionType] != "rotation-probe" || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			h := tokenHash(s.Data["VAULT_TOKEN"])
			mu.Lock()
			if len(hashes) == 0 || hashes[len(hashes)-1] != h {
				hashes, times = append(hashes, h), append(times, time.Now())
			}
			mu.Unlock()
		}
	}()

	begin := time.Now()
	a := runProbe(ctx, t, "rotation-probe", nil)
	took := time.Since(begin)
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(hashes), 2, "the secret was never rotated")
	t.Logf("cycle %s; secret rotated %s after staging", took.Round(100*time.Millisecond), times[1].Sub(times[0]).Round(100*time.Millisecond))
	var out []string
	for _, l := range lines(a.Output) {
		if strings.HasPrefix(l, "timing: ") {
			t.Log("from inside:", l)
			continue
		}
		out = append(out, l)
	}
	assert.Equal(t, []string{
		"file: 440 0:65532", // owner-only, read through the Pod's fsGroup
		"first token: " + hashes[0],
		"env: same as file",
		"first token: works",
		"file changed: " + hashes[1],
		"new token: works",
		"old token: refused",
		"new token: still works",
		"env: still the first token",
	}, out)

	// The record is gone with the action: nothing it was given works.
	sec, err := env.kube.CoreV1().Secrets("airlock-iso").Get(ctx, k8s.SecretName(a.Job.Name), metav1.GetOptions{})
	if err == nil {
		t.Errorf("secret %s outlived the action (accessors %s)", sec.Name, sec.Annotations[activities.AnnotationLeaseAccessors])
	}
}

func tokenHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])[:16]
}
