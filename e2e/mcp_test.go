package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/mcpserver"
)

// progressLog records the progress notifications a client received, by
// progress token.
type progressLog struct {
	mu   sync.Mutex
	msgs map[any][]string
}

func (p *progressLog) add(token any, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.msgs == nil {
		p.msgs = map[any][]string{}
	}
	p.msgs[token] = append(p.msgs[token], msg)
}

// find returns the first message for token containing all of subs.
func (p *progressLog) find(token any, subs ...string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.msgs[token] {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(m, s)
		}
		if ok {
			return m, true
		}
	}
	return "", false
}

// mcpSession runs `airlock mcp` (the real binary, as an agent runtime
// launches it) for agent e2e-adv and connects the official Go MCP client
// to it over stdio. login is how the agent signs (its own Vault token, or
// how to log in as itself); secret must never show in the server's log.
// VAULT_TOKEN only reads the encrypted payloads.
func mcpSession(ctx context.Context, t *testing.T, login []string, secret string, args ...string) (*mcp.ClientSession, *progressLog, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(airlockCLI(t), append([]string{"mcp", "--agent", "e2e-adv"}, args...)...)
	cmd.Env = append(os.Environ(),
		"TEMPORAL_ADDRESS="+env.stack.TemporalAddress, "VAULT_ADDR="+env.stack.VaultAddr, "VAULT_TOKEN="+env.stack.VaultToken,
		"AIRLOCK_CATALOG="+filepath.Join(env.stack.Dir, "catalog.yaml"), "AIRLOCK_UI_URL="+env.stack.TemporalUIURL)
	cmd.Env = append(cmd.Env, login...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	progress := &progressLog{}
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-agent", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress.add(req.Params.ProgressToken, req.Params.Message)
		},
	})
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	require.NoError(t, err, "stderr: %s", stderr)
	t.Cleanup(func() {
		_ = cs.Close()
		assertAbsent(t, "airlock mcp's log", stderr.String(), secret)
	})
	return cs, progress, stderr
}

// callResult is a tool answer: its first text (what the model reads) and
// its structured content.
func callResult(t *testing.T, res *mcp.CallToolResult) (string, mcpserver.Result) {
	t.Helper()
	require.NotEmpty(t, res.Content)
	text := res.Content[0].(*mcp.TextContent).Text
	var r mcpserver.Result
	if res.StructuredContent != nil {
		b, err := json.Marshal(res.StructuredContent)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &r))
	}
	return text, r
}

func TestMCPAgentProposesThroughAirlockTools(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	endpoint := approvalEndpoint(t)
	token := agentLogin(ctx, t, "e2e-adv")
	cs, progress, _ := mcpSession(ctx, t, []string{"AIRLOCK_AGENT_VAULT_TOKEN=" + token}, token, "--wait", "90s", "--progress", "200ms")

	t.Run("the tools are the agent's action types, with the catalog's schemas", func(t *testing.T) {
		res, err := cs.ListTools(ctx, nil)
		require.NoError(t, err)
		tools := map[string]*mcp.Tool{}
		for _, tl := range res.Tools {
			tools[tl.Name] = tl
		}
		assert.ElementsMatch(t, []string{"echo", "quick-write", mcpserver.ToolCycleStatus, mcpserver.ToolPending}, mapKeys(tools))
		for _, name := range []string{"echo", "quick-write"} {
			a, _ := env.catalog.Action(name)
			var want map[string]any
			require.NoError(t, json.Unmarshal(a.ParamsSchema, &want))
			got := tools[name].InputSchema.(map[string]any)
			props := got["properties"].(map[string]any)
			for p, s := range want["properties"].(map[string]any) {
				assert.Equal(t, s, props[p], "%s.%s as in params_schema", name, p)
			}
			assert.Subset(t, got["required"], want["required"])
			assert.Contains(t, got["required"], "rationale")
			assert.Contains(t, props, "thoughts")
		}
		assert.True(t, tools["echo"].Annotations.ReadOnlyHint)
		assert.False(t, tools["quick-write"].Annotations.ReadOnlyHint)
		assert.True(t, *tools["quick-write"].Annotations.DestructiveHint)
		assert.Contains(t, tools["echo"].Description, "autonomous phase for read actions: runs now")
		assert.Contains(t, tools["quick-write"].Description, "advisory phase for write actions: waits for a human")
	})

	t.Run("an autonomous read runs and returns its output", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{
			"text": "hello", "rationale": "check the service answers",
			"thoughts": []any{map[string]any{"content": "is it up?", "confidence": 0.9}},
		}})
		require.NoError(t, err)
		text, r := callResult(t, res)
		require.False(t, res.IsError, text)
		assert.Equal(t, "succeeded", r.Status)
		assert.Equal(t, `{"echo":"done"}`, r.Output)
		require.NotNil(t, r.ExitCode)
		assert.Zero(t, *r.ExitCode)
		assert.True(t, strings.HasPrefix(r.WorkflowID, "cycle/e2e-adv/mcp-"), r.WorkflowID)
		assert.Equal(t, env.stack.TemporalUIURL+"/namespaces/default/workflows/"+strings.ReplaceAll(r.WorkflowID, "/", "%2F"), r.UIURL)
		assert.Contains(t, text, "echo ran and succeeded (exit code 0)")
		trail, err := env.starter.Audit(ctx, r.WorkflowID)
		require.NoError(t, err)
		assert.Contains(t, auditText(trail), "is it up?", "the thoughts are in the audit trail")
		assert.Contains(t, auditText(trail), "agent:e2e-adv", "signed by the agent")
	})

	t.Run("an advisory write waits for a signed Slack click, telling the client meanwhile", func(t *testing.T) {
		type answer struct {
			res *mcp.CallToolResult
			err error
		}
		done := make(chan answer, 1)
		params := &mcp.CallToolParams{Name: "quick-write", Arguments: map[string]any{"target": "db", "rationale": "fix the replica lag"}}
		params.SetProgressToken("write-1")
		go func() {
			res, err := cs.CallTool(ctx, params)
			done <- answer{res, err}
		}()
		var wfID string
		require.Eventually(t, func() bool {
			m, ok := progress.find("write-1", "proposed as cycle cycle/e2e-adv/")
			wfID = strings.TrimPrefix(m, "proposed as cycle ")
			return ok
		}, 30*time.Second, 20*time.Millisecond, "a progress notification names the cycle")
		require.Eventually(t, func() bool {
			_, ok := progress.find("write-1", wfID, "quick-write waits for 1 approval(s) from U1, U2")
			return ok
		}, 30*time.Second, 20*time.Millisecond, "progress says who must decide")
		select {
		case a := <-done:
			t.Fatalf("the call returned before anyone decided: %+v %v", a.res, a.err)
		default:
		}
		msg := waitPosted(t, wfID)
		approve := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionApprove))
		require.Equal(t, 200, click(t, endpoint, "U1", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), signingSecret).StatusCode)

		a := <-done
		require.NoError(t, a.err)
		text, r := callResult(t, a.res)
		require.False(t, a.res.IsError, text)
		assert.Equal(t, wfID, r.WorkflowID)
		assert.Equal(t, "succeeded", r.Status)
		assert.Equal(t, "approved write done", r.Output)
		require.Len(t, r.Decisions, 1)
		assert.Equal(t, "U1", r.Decisions[0].Approver)
		assert.Equal(t, "slack", r.Decisions[0].Via)
		assert.Contains(t, text, "approved by U1")
	})

	t.Run("a denial is a tool error carrying the approver's comment", func(t *testing.T) {
		type answer struct {
			res *mcp.CallToolResult
			err error
		}
		done := make(chan answer, 1)
		params := &mcp.CallToolParams{Name: "quick-write", Arguments: map[string]any{"target": "prod-db", "rationale": "drop the old index"}}
		params.SetProgressToken("write-2")
		go func() {
			res, err := cs.CallTool(ctx, params)
			done <- answer{res, err}
		}()
		var wfID string
		require.Eventually(t, func() bool {
			m, ok := progress.find("write-2", "waits for 1 approval")
			wfID, _, _ = strings.Cut(strings.TrimPrefix(m, "cycle "), ":")
			return ok
		}, 30*time.Second, 20*time.Millisecond)
		out, err := cli(t, "deny", wfID, "--approver", "U2", "--comment", "not during business hours; use the replica")
		require.NoError(t, err, out)

		a := <-done
		require.NoError(t, a.err)
		text, r := callResult(t, a.res)
		assert.True(t, a.res.IsError, "a denial is a tool error")
		assert.Equal(t, "denied", r.Status)
		assert.Contains(t, text, "denied by U2")
		assert.Contains(t, text, "not during business hours; use the replica")
		assert.Contains(t, text, "nothing ran")
		assert.Nil(t, r.ExitCode)
	})

	t.Run("invalid params are a tool error naming the field", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": strings.Repeat("x", 101), "rationale": "r"}})
		require.NoError(t, err)
		assert.True(t, res.IsError)
		assert.Contains(t, res.Content[0].(*mcp.TextContent).Text, "text: maxLength")
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "quick-write", Arguments: map[string]any{"target": 5, "rationale": "r"}})
		require.NoError(t, err)
		assert.True(t, res.IsError)
		assert.Contains(t, res.Content[0].(*mcp.TextContent).Text, "Invalid arguments for quick-write, nothing was proposed: target: got number, want string")
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "quick-write", Arguments: map[string]any{"target": "db"}})
		require.NoError(t, err)
		assert.True(t, res.IsError)
		assert.Contains(t, res.Content[0].(*mcp.TextContent).Text, "rationale: required")
	})
}

// Past --wait a call answers "pending" (nothing ran) with the cycle to
// poll; airlock_pending lists it and airlock_cycle_status gives the result
// once a human approved.
func TestMCPPendingPastTheWaitThenPolled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	endpoint := approvalEndpoint(t)
	// This server logs in to Vault as the agent itself (AppRole), as a
	// long-running one should: its token is renewed while it runs.
	id, err := env.broker.EnsureAgentIdentity(ctx, "e2e-adv")
	require.NoError(t, err)
	sid, err := env.broker.AgentSecretID(ctx, "e2e-adv")
	require.NoError(t, err)
	sidFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(sidFile, []byte(sid.Value()), 0o600))
	cs, _, _ := mcpSession(ctx, t, []string{"AIRLOCK_AGENT_AUTH_METHOD=approle", "AIRLOCK_AGENT_AUTH_MOUNT=" + id.AppRoleMount,
		"AIRLOCK_AGENT_ROLE_ID=" + id.RoleID, "AIRLOCK_AGENT_SECRET_ID_FILE=" + sidFile}, sid.Value(), "--wait", "2s")

	// A client that claims the write is harmless changes nothing: Airlock
	// never reads hints from clients.
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "quick-write", Arguments: map[string]any{"target": "cache", "rationale": "warm the cache"},
		Meta: mcp.Meta{"annotations": map[string]any{"readOnlyHint": true, "destructiveHint": false}, "readOnlyHint": true}})
	require.NoError(t, err)
	text, r := callResult(t, res)
	require.False(t, res.IsError, "pending is not an error: %s", text)
	assert.Equal(t, mcpserver.StatusPending, r.Status)
	assert.Nil(t, r.ExitCode, "it never pretends to have run")
	require.NotNil(t, r.Waiting)
	assert.Equal(t, []string{"U1", "U2"}, r.Waiting.Approvers)
	assert.Contains(t, text, "Not run yet")
	assert.Contains(t, text, mcpserver.ToolCycleStatus)
	assert.Contains(t, text, r.WorkflowID)

	status := func() (*mcp.CallToolResult, mcpserver.Result) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpserver.ToolCycleStatus, Arguments: map[string]any{"workflow_id": r.WorkflowID}})
		require.NoError(t, err)
		_, got := callResult(t, res)
		return res, got
	}
	_, st := status()
	assert.Equal(t, mcpserver.StatusPending, st.Status)

	// Visibility follows the cycle by a moment.
	require.Eventually(t, func() bool {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpserver.ToolPending, Arguments: map[string]any{}})
		return err == nil && strings.Contains(res.Content[0].(*mcp.TextContent).Text, r.WorkflowID+": quick-write waits for 1 approval(s)")
	}, 15*time.Second, 200*time.Millisecond, "airlock_pending lists the waiting action")

	msg := waitPosted(t, r.WorkflowID)
	approve := buttonValue(t, msg.Get("blocks"), approval.ActionID(contract.DecisionApprove))
	require.Equal(t, 200, click(t, endpoint, "U2", approval.ActionID(contract.DecisionApprove), approve, msg.Get("ts"), time.Now(), signingSecret).StatusCode)

	var final mcpserver.Result
	require.Eventually(t, func() bool {
		res, got := status()
		final = got
		return !res.IsError && got.Status == "succeeded"
	}, 60*time.Second, 200*time.Millisecond, "airlock_cycle_status returns the result")
	assert.Equal(t, "approved write done", final.Output)
	require.Len(t, final.Decisions, 1)
	assert.Equal(t, "U2", final.Decisions[0].Approver)
}

func auditText(trail []contract.AuditEntry) string {
	b, _ := json.Marshal(trail)
	return string(b)
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
