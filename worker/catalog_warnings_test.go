package worker_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/worker"
)

// An agent whose running_jobs budget exceeds its Pod quota (its own or the
// default 10) is named with both numbers; one within its quota is not.
func TestCatalogWarnsOfARunningJobsBudgetAboveThePodQuota(t *testing.T) {
	cat, err := policy.Parse("warnings", []byte(`
actions:
  - name: a
    image: docker.io/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
    command: ["true"]
    class: read
    risk: low
    vault_policies: [p]
agents:
  - {id: over-default, owner: o, namespace: ns-a, actions: [a], phases: {read: autonomous, write: shadow}, budgets: {running_jobs: 400}}
  - {id: over-own, owner: o, namespace: ns-b, actions: [a], phases: {read: autonomous, write: shadow}, quota: {pods: 20}, budgets: {running_jobs: 21}}
  - {id: within, owner: o, namespace: ns-c, actions: [a], phases: {read: autonomous, write: shadow}, quota: {pods: 400}, budgets: {running_jobs: 400}}
  - {id: defaults, owner: o, namespace: ns-d, actions: [a], phases: {read: autonomous, write: shadow}}
`))
	require.NoError(t, err)
	got := worker.CatalogWarnings(cat)
	require.Len(t, got, 2)
	assert.Contains(t, got[0], "agent over-default: budgets.running_jobs (400) exceeds quota.pods (10)")
	assert.Contains(t, got[1], "agent over-own: budgets.running_jobs (21) exceeds quota.pods (20)")
}
