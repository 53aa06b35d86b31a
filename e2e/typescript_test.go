package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/contract"
)

// The TypeScript examples (examples/typescript) run against the real stack
// as a user runs them: `npm ci` from the committed lockfile, `tsc`, then
// node with only the environment the README tells them to set.

var tsExample struct {
	sync.Once
	dir  string
	node string
	skip string
	err  error
}

// typescriptExample installs and compiles examples/typescript once per run
// and returns its directory.
func typescriptExample(t *testing.T) (dir, node string) {
	t.Helper()
	tsExample.Do(func() {
		node, errNode := exec.LookPath("node")
		npm, errNpm := exec.LookPath("npm")
		if errNode != nil || errNpm != nil {
			tsExample.skip = "node and npm are needed for the TypeScript examples (CI has them): " + errors.Join(errNode, errNpm).Error()
			return
		}
		dir, err := filepath.Abs("../examples/typescript")
		if err != nil {
			tsExample.err = err
			return
		}
		for _, args := range [][]string{
			{"ci", "--no-audit", "--no-fund", "--prefer-offline"},
			{"run", "build"},
		} {
			cmd := exec.Command(npm, args...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				tsExample.err = errors.New("npm " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(out))
				return
			}
		}
		tsExample.dir, tsExample.node = dir, node
	})
	if tsExample.skip != "" {
		t.Skip(tsExample.skip)
	}
	require.NoError(t, tsExample.err)
	return tsExample.dir, tsExample.node
}

// codecServer is `airlock codec-server` (the real binary) on a free port.
type codecServer struct {
	url, token string
}

func startCodecServer(t *testing.T) codecServer {
	t.Helper()
	token := randomHex(t)
	cmd := exec.Command(airlockCLI(t), "codec-server", "--listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+env.stack.VaultAddr, "VAULT_TOKEN="+env.stack.VaultToken, "AIRLOCK_CODEC_TOKEN="+token)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
	})
	addr := make(chan string, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "codec server listening" {
				addr <- line.Addr
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case a := <-addr:
		return codecServer{url: "http://" + a, token: token}
	case <-done:
		t.Fatal("airlock codec-server exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("airlock codec-server did not listen within 30s")
	}
	return codecServer{}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// runNode runs a compiled example with exactly env (plus PATH and HOME): no
// VAULT_TOKEN or anything else of the test's leaks into it.
func runNode(ctx context.Context, t *testing.T, script string, env ...string) (stdout, stderr string, err error) {
	t.Helper()
	dir, node := typescriptExample(t)
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// tsAgentOutput is the JSON line examples/typescript/agent.ts prints.
type tsAgentOutput struct {
	WorkflowID string `json:"workflow_id"`
	Outcome    string `json:"outcome"`
	Error      string `json:"error"`
	Actions    []struct {
		Index    int    `json:"index"`
		Type     string `json:"type"`
		Outcome  string `json:"outcome"`
		ExitCode int    `json:"exit_code"`
		Output   string `json:"output"`
	} `json:"actions"`
	Codec struct{ Encode, Decode int } `json:"codec"`
}

func TestTypeScriptAgentStartsCycleAndReadsResultThroughCodecServer(t *testing.T) {
	typescriptExample(t) // skips before anything starts when node is missing
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := startCodecServer(t)
	id, err := env.broker.EnsureAgentIdentity(ctx, "e2e")
	require.NoError(t, err)
	// agentEnv is what the README tells a user to set, with a fresh AppRole
	// secret id: the agent logs in as itself (no VAULT_TOKEN reaches it).
	agentEnv := func(t *testing.T, cycle, codecToken string) (vars []string, secretID string) {
		sid, err := env.broker.AgentSecretID(ctx, "e2e")
		require.NoError(t, err)
		return []string{
			"TEMPORAL_ADDRESS=" + env.stack.TemporalAddress, "VAULT_ADDR=" + env.stack.VaultAddr,
			"AIRLOCK_AGENT_ROLE_ID=" + id.RoleID, "AIRLOCK_AGENT_SECRET_ID=" + sid.Value(),
			"AIRLOCK_CODEC_URL=" + cs.url, "AIRLOCK_CODEC_TOKEN=" + codecToken,
			"AIRLOCK_AGENT_ID=e2e", "AIRLOCK_CYCLE_ID=" + cycle,
			"AIRLOCK_ACTION=echo", `AIRLOCK_ACTION_PARAMS={"text":"hi from typescript"}`,
		}, sid.Value()
	}

	t.Run("succeeds", func(t *testing.T) {
		cycle := cycleID(t)
		vars, secretID := agentEnv(t, cycle, cs.token)
		stdout, stderr, err := runNode(ctx, t, "agent.js", vars...)
		require.NoError(t, err, "stdout: %s\nstderr: %s", stdout, stderr)
		var got tsAgentOutput
		require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
		wfID := contract.CycleWorkflowID("e2e", cycle)
		assert.Equal(t, wfID, got.WorkflowID)
		assert.Equal(t, "succeeded", got.Outcome, stdout)
		require.Len(t, got.Actions, 1, stdout)
		assert.Equal(t, "echo", got.Actions[0].Type)
		assert.Equal(t, "succeeded", got.Actions[0].Outcome)
		assert.Equal(t, 0, got.Actions[0].ExitCode)
		assert.Equal(t, `{"echo":"done"}`, got.Actions[0].Output, "the Job's termination message")
		assert.Positive(t, got.Codec.Encode, "the request went out through /encode")
		assert.Positive(t, got.Codec.Decode, "the result came back through /decode")
		assert.NotContains(t, stdout+stderr, cs.token)
		assert.NotContains(t, stdout+stderr, secretID)

		// What a Go reader with the worker's codec sees is what TypeScript printed.
		res, err := env.starter.Result(ctx, wfID)
		require.NoError(t, err)
		assert.Equal(t, res.Actions[0].Output, got.Actions[0].Output)

		// The server only ever held ciphertext: the request as the agent
		// sent it, and the result it read back.
		h := rawHistory(ctx, t, wfID)
		total, encrypted := countPayloads(h)
		assert.Equal(t, total, encrypted, "every payload in the history is encrypted")
		var input, result *commonpb.Payload
		for _, ev := range h.Events {
			switch ev.GetEventType() {
			case enums.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
				input = ev.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0]
			case enums.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
				result = ev.GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads()[0]
			}
		}
		require.NotNil(t, input)
		require.NotNil(t, result)
		assert.True(t, codec.IsEncrypted(input), "the request was sealed by /encode before it left the agent")
		assert.True(t, codec.IsEncrypted(result))
		assert.NotContains(t, string(result.GetData()), "done")

		// Decrypted, the input is the plain JSON request, signed by the agent;
		// its login never entered the workflow.
		req := cycleInput(t, input)
		require.NotNil(t, req.Signature)
		assert.Equal(t, "airlock-agent-e2e", req.Signature.Key)
		assert.Equal(t, "hi from typescript", req.Actions[0].Params["text"])
		var payloads strings.Builder
		walkPayloads(decodedHistory(t, h).ProtoReflect(), func(string) bool { return false },
			func(p *commonpb.Payload) { payloads.Write(p.GetData()) })
		assert.NotContains(t, payloads.String(), secretID)
		assert.NotContains(t, env.logs.String(), secretID)
	})

	// TRACEPARENT (the agent's LLM span) goes into the start's Temporal
	// header as the Go SDK's tracing interceptor writes it: the worker's
	// spans of the cycle are in the agent's trace, under the agent's span.
	t.Run("joins the agent trace from TRACEPARENT", func(t *testing.T) {
		cycle := cycleID(t)
		vars, _ := agentEnv(t, cycle, cs.token)
		tp, traceID := agentTraceparent(t)
		stdout, stderr, err := runNode(ctx, t, "agent.js", append(vars, "TRACEPARENT="+tp, "TRACESTATE=agent=ts")...)
		require.NoError(t, err, "stdout: %s\nstderr: %s", stdout, stderr)
		assert.NotContains(t, stderr, "warning")
		spans := requireCycleInTrace(t, traceID, contract.CycleWorkflowID("e2e", cycle))
		run := spans["RunWorkflow:AgentCycle"]
		assert.Equal(t, tp[36:52], run.Parent.SpanID().String(), "a child of the agent's span")
		assert.Equal(t, "agent=ts", run.SpanContext.TraceState().String())
	})

	t.Run("a malformed TRACEPARENT is only a warning", func(t *testing.T) {
		cycle := cycleID(t)
		vars, _ := agentEnv(t, cycle, cs.token)
		stdout, stderr, err := runNode(ctx, t, "agent.js", append(vars, "TRACEPARENT=00-nonsense-01")...)
		require.NoError(t, err, "stdout: %s\nstderr: %s", stdout, stderr)
		assert.Contains(t, stderr, `warning: invalid traceparent "00-nonsense-01"`)
		var got tsAgentOutput
		require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
		assert.Equal(t, "succeeded", got.Outcome)
	})

	// Without the codec server's token nothing leaves the agent: no cycle.
	t.Run("codec server refuses a wrong token", func(t *testing.T) {
		cycle := cycleID(t)
		vars, _ := agentEnv(t, cycle, "not-the-token")
		stdout, stderr, err := runNode(ctx, t, "agent.js", vars...)
		require.Error(t, err, "stdout: %s", stdout)
		assert.Contains(t, stderr, "codec server /encode: HTTP 401")
		_, err = env.tc.DescribeWorkflowExecution(ctx, contract.CycleWorkflowID("e2e", cycle), "")
		var notFound *serviceerror.NotFound
		assert.ErrorAs(t, err, &notFound, "no cycle was started")
	})
}

// cycleInput decrypts a cycle's input payload into the request the agent sent.
func cycleInput(t *testing.T, p *commonpb.Payload) contract.CycleRequest {
	t.Helper()
	dec, err := env.codec.Decode([]*commonpb.Payload{p})
	require.NoError(t, err)
	assert.Equal(t, "json/plain", string(dec[0].GetMetadata()["encoding"]), "plain JSON, not a Go type")
	var req contract.CycleRequest
	require.NoError(t, json.Unmarshal(dec[0].GetData(), &req))
	return req
}

// tsMCPOutput is the JSON line examples/typescript/mcp-client.ts prints.
type tsMCPOutput struct {
	Tools      []string `json:"tools"`
	Tool       string   `json:"tool"`
	IsError    bool     `json:"is_error"`
	Outcome    string   `json:"outcome"`
	ExitCode   int      `json:"exit_code"`
	Output     string   `json:"output"`
	WorkflowID string   `json:"workflow_id"`
	Error      string   `json:"error"`
}

func TestTypeScriptMCPClientListsToolsAndCallsOne(t *testing.T) {
	bin := airlockCLI(t)
	if out, err := exec.Command(bin, "mcp", "--help").CombinedOutput(); err != nil && strings.Contains(string(out), `unknown command "mcp"`) {
		t.Skip("this airlock has no `mcp` command yet: the MCP client example is tested once `airlock mcp` is merged")
	}
	typescriptExample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	agentToken := agentLogin(ctx, t, "e2e")
	stdout, stderr, err := runNode(ctx, t, "mcp-client.js",
		"AIRLOCK_BIN="+bin, "AIRLOCK_AGENT_ID=e2e", "AIRLOCK_MCP_TOOL=echo", `AIRLOCK_ACTION_PARAMS={"text":"hi from mcp"}`,
		// What `airlock cycle start` reads: the agent signs with its own
		// token; VAULT_TOKEN opens the payload codec, as for the CLI tests.
		"TEMPORAL_ADDRESS="+env.stack.TemporalAddress, "VAULT_ADDR="+env.stack.VaultAddr,
		"VAULT_TOKEN="+env.stack.VaultToken, "AIRLOCK_AGENT_VAULT_TOKEN="+agentToken,
		"AIRLOCK_CATALOG="+env.workerConfig.CatalogPath)
	require.NoError(t, err, "stdout: %s\nstderr: %s", stdout, stderr)
	var got tsMCPOutput
	require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
	// The e2e agent's action types, and no other agent's.
	assert.Subset(t, got.Tools, []string{"echo", "slow-write", "db-report"})
	assert.NotContains(t, got.Tools, "quick-write", "not an action type of agent e2e")
	assert.False(t, got.IsError, got.Error)
	assert.Equal(t, "succeeded", got.Outcome, stdout)
	assert.Equal(t, 0, got.ExitCode)
	assert.Equal(t, `{"echo":"done"}`, got.Output)
	require.True(t, strings.HasPrefix(got.WorkflowID, "cycle/e2e/"), got.WorkflowID)
	assert.NotContains(t, stdout+stderr, agentToken)

	res, err := env.starter.Result(ctx, got.WorkflowID)
	require.NoError(t, err)
	assert.Equal(t, contract.OutcomeSucceeded, res.Outcome)
	h := rawHistory(ctx, t, got.WorkflowID)
	req := cycleInput(t, h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0])
	require.Len(t, req.Actions, 1)
	assert.Equal(t, "echo", req.Actions[0].Type)
	assert.Equal(t, "hi from mcp", req.Actions[0].Params["text"])
	assert.NotEmpty(t, req.Actions[0].Rationale, "the tool call's rationale is the action's")
}
