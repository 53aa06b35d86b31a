package chaos

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"
)

func rootClient(t *testing.T) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = env.stack.VaultAddr
	c, err := api.NewClient(cfg)
	require.NoError(t, err)
	c.SetToken(env.stack.VaultToken)
	return c
}

// actionTokens lists every token in Vault (root may list accessors) and
// returns how many belong to the chaos agents at all — their agent tokens
// stay, so a listing that finds none proves nothing — and how many are
// action tokens of this round's cycles that are still valid.
func actionTokens(ctx context.Context, t *testing.T, stamp string) (agentTokens, valid int) {
	t.Helper()
	c := rootClient(t)
	s, err := c.Logical().ListWithContext(ctx, "auth/token/accessors")
	require.NoError(t, err)
	keys, _ := s.Data["keys"].([]any)
	for _, k := range keys {
		acc, _ := k.(string)
		l, err := c.Auth().Token().LookupAccessorWithContext(ctx, acc)
		if err != nil {
			continue // revoked or expired since the listing
		}
		meta, _ := l.Data["meta"].(map[string]any)
		agent, _ := meta["agent"].(string)
		wf, _ := meta["workflow_id"].(string)
		if strings.HasPrefix(agent, "chaos-") && wf == "" {
			agentTokens++
		}
		if strings.Contains(wf, "/"+stamp+"-") {
			valid++
			t.Logf("still valid: accessor %s workflow %s action %v ttl %v", acc, wf, meta["action_index"], l.Data["ttl"])
		}
	}
	return agentTokens, valid
}

// dbLeases counts the dynamic database credentials Vault still holds.
func dbLeases(ctx context.Context, t *testing.T) int {
	t.Helper()
	s, err := rootClient(t).Logical().ListWithContext(ctx, "sys/leases/lookup/database/creds/chaos-readonly")
	require.NoError(t, err)
	if s == nil {
		return 0
	}
	keys, _ := s.Data["keys"].([]any)
	return len(keys)
}
