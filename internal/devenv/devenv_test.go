package devenv_test

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.uber.org/goleak"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devenv"
	"github.com/airlockhq/airlock/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is the workflow's side of a click: it remembers decisions.
type recorder struct {
	mu   sync.Mutex
	got  []contract.Decision
	wfID []string
}

func (r *recorder) Decide(_ context.Context, wfID string, d contract.Decision) (contract.DecisionResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got, r.wfID = append(r.got, d), append(r.wfID, wfID)
	return contract.DecisionResult{Status: "approved"}, nil
}

func (r *recorder) decisions() []contract.Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]contract.Decision(nil), r.got...)
}

func start(t *testing.T, dec approval.Decider) *devenv.Servers {
	t.Helper()
	ln, codecURL, err := devenv.CodecListener()
	require.NoError(t, err)
	s, err := devenv.Start(devenv.Config{CodecListener: ln, Codec: converter.NewZlibCodec(converter.ZlibCodecOptions{AlwaysEncode: true}),
		UIURL: "http://127.0.0.1:8233", Approvals: approval.HandlerConfig{Decider: dec}})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	assert.Equal(t, codecURL, s.CodecURL)
	return s
}

var pending = contract.PendingAction{WorkflowID: "cycle/advisor/dev-1", AgentID: "advisor",
	Action: policy.RenderedAction{Index: 1, Type: "scale-deployment", Hash: "0f1e2d3c4b5a"}}

// The printed command, pasted into a shell, is a click Slack's signature
// check accepts: it approves exactly the waiting action as the approver.
func TestPrintedClickCommandApproves(t *testing.T) {
	for _, tool := range []string{"sh", "curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the printed command needs it", tool)
		}
	}
	rec := &recorder{}
	s := start(t, rec)
	body, err := devenv.ClickBody(pending, contract.DecisionApprove, "U0APPROVER1")
	require.NoError(t, err)
	cmdline := devenv.ClickCommand(s.ApprovalsURL, body)

	run := func(secret string) string {
		cmd := exec.CommandContext(t.Context(), "sh", "-c", cmdline)
		cmd.Env = append(cmd.Environ(), "SLACK_SIGNING_SECRET="+secret)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.TrimSpace(string(out))
	}
	assert.Equal(t, "invalid signature", run("not-the-secret"))
	assert.Empty(t, rec.decisions(), "a wrongly signed click decides nothing")
	assert.Equal(t, "approved", run(s.SigningSecret))
	require.Len(t, rec.decisions(), 1)
	assert.Equal(t, contract.Decision{ActionIndex: 1, ActionHash: "0f1e2d3c4b5a", Kind: contract.DecisionApprove, Approver: "U0APPROVER1", Via: "slack"},
		rec.decisions()[0])
	assert.NotContains(t, cmdline, s.SigningSecret, "the command reads the secret from the environment")
}

func TestClickSignsLikeSlack(t *testing.T) {
	rec := &recorder{}
	s := start(t, rec)
	body, err := devenv.ClickBody(pending, contract.DecisionDeny, "U0APPROVER2")
	require.NoError(t, err)
	_, err = devenv.Click(t.Context(), s.ApprovalsURL, "wrong", body)
	assert.ErrorContains(t, err, "401 Unauthorized")
	got, err := devenv.Click(t.Context(), s.ApprovalsURL, s.SigningSecret, body)
	require.NoError(t, err)
	assert.Equal(t, "approved", got, "the decider's answer")
	require.Len(t, rec.decisions(), 1)
	assert.Equal(t, contract.DecisionDeny, rec.decisions()[0].Kind)
}

// The UI printed as http://127.0.0.1:PORT is also reached as
// http://localhost:PORT; the codec server answers both and nothing else.
func TestCodecServerAllowsTheUIOrigins(t *testing.T) {
	s := start(t, &recorder{})
	for origin, want := range map[string]int{
		"http://127.0.0.1:8233": http.StatusOK,
		"http://localhost:8233": http.StatusOK,
		"http://localhost:8234": http.StatusForbidden,
		"https://evil.example":  http.StatusForbidden,
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.CodecURL+"/decode", strings.NewReader(`{"payloads":[]}`))
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, origin)
	}
}

func TestUIOrigins(t *testing.T) {
	for in, want := range map[string][]string{
		"http://127.0.0.1:8233":  {"http://127.0.0.1:8233", "http://localhost:8233"},
		"http://localhost:41000": {"http://127.0.0.1:41000", "http://localhost:41000"},
		"https://temporal.corp":  {"https://temporal.corp"},
	} {
		got, err := devenv.UIOrigins(in)
		require.NoError(t, err)
		assert.Equal(t, want, got, in)
	}
	_, err := devenv.UIOrigins("not a url")
	assert.Error(t, err)
}
