package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
)

// tokenSeen is how Vault described an action's token while its Job ran.
type tokenSeen struct {
	accessor string
	role     string // the token role it was created against
	path     string // its creation path
	policies []string
}

// watchToken looks the action's token up by accessor, as root, as soon as
// its Secret exists: staging writes the Secret only once the token is live,
// and it stays live until the Job has ended.
func watchToken(ctx context.Context, t *testing.T, namespace, jobName string) <-chan tokenSeen {
	out := make(chan tokenSeen, 1)
	go func() {
		defer close(out)
		seen, ok := <-watchSecret(ctx, namespace, jobName)
		if !ok {
			return
		}
		root, err := api.NewClient(&api.Config{Address: env.stack.VaultAddr})
		if err != nil {
			t.Errorf("vault client: %v", err)
			return
		}
		root.SetToken(env.stack.VaultToken)
		s, err := root.Auth().Token().LookupAccessorWithContext(ctx, seen.accessor)
		if err != nil {
			t.Errorf("lookup live token %s: %v", seen.accessor, err)
			return
		}
		pols, _ := s.TokenPolicies()
		role, _ := s.Data["role"].(string)
		path, _ := s.Data["path"].(string)
		out <- tokenSeen{accessor: seen.accessor, role: role, path: path, policies: pols}
	}()
	return out
}

// Read actions (and all that runs in shadow) get their token from the
// read-only token role, whose allowed_policies hold only read policies: a
// catalog that names a write policy for a read action still cannot lease it.
func TestReadActionTokenComesFromTheReadOnlyRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := contract.CycleRequest{AgentID: "e2e", CycleID: cycleID(t),
		Actions: []policy.Proposal{{Type: "echo", Params: map[string]any{"text": "read only"}}}}
	seenCh := watchToken(ctx, t, ns, k8s.JobName(contract.CycleWorkflowID(req.AgentID, req.CycleID), 0))

	res, err := env.starter.RunCycle(ctx, req)
	require.NoError(t, err)
	require.Equal(t, contract.OutcomeSucceeded, res.Outcome, "%+v", res.Actions)
	require.Len(t, res.Actions, 1)

	seen, ok := <-seenCh
	require.True(t, ok, "the action's token was never seen alive")
	assert.Equal(t, res.Actions[0].LeaseAccessor, seen.accessor)
	assert.Equal(t, vault.DefaultReadTokenRole, seen.role, "issued under the read-only role (path %s)", seen.path)
	assert.Equal(t, "auth/token/create/"+vault.DefaultReadTokenRole, seen.path)
	assert.Equal(t, []string{"airlock-e2e-read"}, seen.policies)
}
