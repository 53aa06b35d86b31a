package chaos

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlockhq/airlock/k8s"
)

// An agent's namespace holds the quota its catalog entry sets (or the
// defaults), and a LimitRange gives every container requests and limits.
func TestAgentNamespaceQuotaAndLimits(t *testing.T) {
	for ns, want := range map[string]struct {
		pods, cpu, memory string
	}{
		"airlock-chaos-auto": {"400", "64", "64Gi"}, // from the catalog
		"airlock-chaos-sup":  {"10", k8s.DefaultQuotaCPU, k8s.DefaultQuotaMemory},
	} {
		qs, err := env.kube.CoreV1().ResourceQuotas(ns).List(t.Context(), metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, qs.Items, 1, ns)
		hard := qs.Items[0].Spec.Hard
		assert.Equal(t, want.pods, hard.Pods().String(), "%s pods", ns)
		q := hard[corev1.ResourceLimitsCPU]
		if q.IsZero() {
			q = hard[corev1.ResourceRequestsCPU]
		}
		assert.Equal(t, want.cpu, q.String(), "%s cpu", ns)
		m := hard[corev1.ResourceLimitsMemory]
		if m.IsZero() {
			m = hard[corev1.ResourceRequestsMemory]
		}
		assert.Equal(t, want.memory, m.String(), "%s memory", ns)

		lrs, err := env.kube.CoreV1().LimitRanges(ns).List(t.Context(), metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, lrs.Items, 1, ns)
		var container *corev1.LimitRangeItem
		for i, it := range lrs.Items[0].Spec.Limits {
			if it.Type == corev1.LimitTypeContainer {
				container = &lrs.Items[0].Spec.Limits[i]
			}
		}
		require.NotNil(t, container, "%s: a container LimitRange", ns)
		assert.False(t, container.Default.Cpu().IsZero(), "%s: default CPU limit", ns)
		assert.False(t, container.DefaultRequest.Memory().IsZero(), "%s: default memory request", ns)
	}
}
