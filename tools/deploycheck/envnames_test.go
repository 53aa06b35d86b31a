package deploycheck

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The parser finds what the worker, codec and CLI really read, so the
// compose check below compares against Airlock's code, not a copy of it.
func TestProductEnvNamesFindsKnownReaders(t *testing.T) {
	names, err := ProductEnvNames(repoRoot)
	require.NoError(t, err)
	for _, want := range []string{
		"TEMPORAL_ADDRESS", "VAULT_ADDR", "KUBECONFIG", "AIRLOCK_CATALOG", // worker.FromEnv (os.Getenv)
		"AIRLOCK_KUBE_QPS",                                                      // worker envFloat
		"AIRLOCK_LEASE_FUSE",                                                    // worker envDuration
		"AIRLOCK_TRANSIT_KEY",                                                   // worker.CodecFromEnv
		"AIRLOCK_APPROVALS_LISTEN",                                              // cmd/airlock envOr
		"SLACK_SIGNING_SECRET",                                                  // cmd/airlock os.Getenv
		"TRACEPARENT",                                                           // telemetry.EnvTraceParent
		"TEMPORAL_API_KEY", "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_PROFILE", // worker.EnvTemporal* (read by the SDK's envconfig)
	} {
		assert.Contains(t, names, want)
	}
	assert.NotContains(t, names, "OTEL_EXPORTER_OTLP_", "fragments are not names")
}
