package worker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {token: "not-a-real-token"}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`

// The worker's Kubernetes client must never run with client-go's default
// limit (5 requests/s, burst 10): with it, 100 concurrent Jobs missed
// their heartbeats.
func TestRestConfigRateLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(kubeconfig), 0o600))
	tests := map[string]struct {
		limits    KubeLimits
		wantQPS   float32
		wantBurst int
	}{
		"defaults":           {KubeLimits{}, DefaultKubeQPS, DefaultKubeBurst},
		"configured":         {KubeLimits{QPS: 50, Burst: 75}, 50, 75},
		"limiter turned off": {KubeLimits{QPS: -1}, -1, DefaultKubeBurst},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			rc, err := RestConfig(path, tt.limits)
			require.NoError(t, err)
			assert.Equal(t, tt.wantQPS, rc.QPS)
			assert.Equal(t, tt.wantBurst, rc.Burst)
			// What the clientset really uses.
			cs, err := kubernetes.NewForConfig(rc)
			require.NoError(t, err)
			rl := cs.BatchV1().RESTClient().GetRateLimiter()
			if tt.wantQPS < 0 {
				assert.Nil(t, rl, "no client-side limiter")
			} else {
				require.NotNil(t, rl)
				assert.Equal(t, tt.wantQPS, rl.QPS())
			}
		})
	}
}

func TestFromEnvReadsWorkerLimits(t *testing.T) {
	t.Setenv("AIRLOCK_KUBE_QPS", "250")
	t.Setenv("AIRLOCK_KUBE_BURST", "300")
	t.Setenv("AIRLOCK_MAX_CONCURRENT_ACTIVITIES", "400")
	t.Setenv("AIRLOCK_ACTION_TOKEN_TTL", "90s")
	t.Setenv("AIRLOCK_LEASE_FUSE", "5s")
	cfg := FromEnv()
	assert.Equal(t, KubeLimits{QPS: 250, Burst: 300}, cfg.Kube)
	assert.Equal(t, 400, cfg.MaxConcurrentActivities)
	assert.Equal(t, 90*time.Second, cfg.ActionTokenTTL)
	assert.Equal(t, 5*time.Second, cfg.LeaseFuse)

	var zero Config
	zero.defaults()
	assert.Equal(t, KubeLimits{QPS: DefaultKubeQPS, Burst: DefaultKubeBurst}, zero.Kube)
	assert.Equal(t, DefaultMaxConcurrentActivities, zero.MaxConcurrentActivities)
	assert.Equal(t, 5*time.Minute, zero.ActionTokenTTL)
	assert.Equal(t, 10*time.Second, zero.LeaseFuse)
}
