package vault_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/vault"
)

// stack is one Vault and one Kubernetes control plane for the broker tests
// (login, agent tokens, database, renewal). Tests that need their own
// server (transit_test.go) start it themselves.
var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(devstack.Main(m, devstack.Options{Vault: true, Kube: true}, &stack))
}

var seq atomic.Int64

// uniq returns a name unique within this test binary.
func uniq(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

// rootClient is a raw API client with the dev root token, for setup and
// for checking what the broker did.
func rootClient(t *testing.T) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = stack.VaultAddr
	c, err := api.NewClient(cfg)
	require.NoError(t, err)
	c.SetToken(stack.VaultToken)
	return c
}

// rootBroker is a broker with the dev root token, for setup helpers.
func rootBroker(t *testing.T) *vault.Broker {
	t.Helper()
	b, err := vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken})
	require.NoError(t, err)
	return b
}

// brokerSetup is what the agent and database tests share: an action token
// role, the agent role and a worker that holds only the worker policy.
type brokerSetup struct {
	root         *vault.Broker
	worker       *vault.Broker
	actionPolicy string
	agentRole    string
	registry     string
}

// setupBroker creates, as root, the roles and policies a deployment would
// have, and a worker token limited to WorkerPolicyHCL, so the tests prove
// the worker's policy is enough.
func setupBroker(t *testing.T, actionPolicyHCL string) brokerSetup {
	t.Helper()
	ctx := t.Context()
	actionRole, agentRole := uniq("airlock-action"), uniq("airlock-agent")
	s := brokerSetup{actionPolicy: uniq("action"), agentRole: agentRole, registry: "secret/" + uniq("airlock-test") + "/agent-tokens"}

	setup, err := vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken, TokenRole: actionRole})
	require.NoError(t, err)
	s.root = setup
	require.NoError(t, setup.PutPolicy(ctx, s.actionPolicy, actionPolicyHCL))
	require.NoError(t, setup.EnsureRole(ctx, vault.RoleConfig{AllowedPolicies: []string{s.actionPolicy}, MaxTTL: "1h"}))
	require.NoError(t, setup.EnsureAgentRole(ctx, vault.AgentRoleConfig{Role: agentRole, Policy: agentRole, Period: time.Hour}))

	workerPolicy := uniq("airlock-worker")
	require.NoError(t, setup.PutPolicy(ctx, workerPolicy, vault.WorkerPolicyHCL(vault.WorkerPolicyConfig{
		ActionRole: actionRole, AgentRole: agentRole, Registry: s.registry,
	})))
	tok, err := rootClient(t).Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{workerPolicy}, TTL: "1h", NoDefaultPolicy: true, DisplayName: "worker",
	})
	require.NoError(t, err)
	s.worker, err = vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: tok.Auth.ClientToken, TokenRole: actionRole})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rootClient(t).Auth().Token().RevokeOrphan(tok.Auth.ClientToken) })
	return s
}

// agentConfig configures AgentTokens for the setup's roles.
func (s brokerSetup) agentConfig() vault.AgentConfig {
	return vault.AgentConfig{Role: s.agentRole, Policies: []string{s.agentRole}, Registry: s.registry}
}

// assertHidden checks that no rendering of v that could reach a log, a
// trace, an error or workflow history contains any of the secrets.
func assertHidden(t *testing.T, v any, secrets ...string) {
	t.Helper()
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "v", v)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "v", v)
	js, err := json.Marshal(v)
	require.NoError(t, err)
	wrapped, err := json.Marshal(map[string]any{"nested": []any{v}})
	require.NoError(t, err)
	renderings := map[string]string{
		"%v":      fmt.Sprintf("%v", v),
		"%+v":     fmt.Sprintf("%+v", v),
		"%#v":     fmt.Sprintf("%#v", v),
		"%s":      fmt.Sprintf("%s", v),
		"%q":      fmt.Sprintf("%q", v),
		"nested":  fmt.Sprintf("%v %+v", []any{v}, map[string]any{"k": v}),
		"error":   fmt.Errorf("wrapped: %v", v).Error(),
		"slog":    logs.String(),
		"json":    string(js),
		"json-in": string(wrapped),
	}
	for _, secret := range secrets {
		require.NotEmpty(t, secret)
		for how, out := range renderings {
			assert.NotContains(t, out, secret, "%s rendering of %T leaks a secret: %s", how, v, out)
		}
	}
}

// assertNoSecret checks an error message against secret values.
func assertNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error leaks a secret value: %v", err)
		}
	}
}

// verifyNoLeaks checks goroutines at the end of a test, ignoring those that
// were there before it and the HTTP client's idle connections.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore,
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		)
	})
}
