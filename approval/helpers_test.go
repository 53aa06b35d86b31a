package approval

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/workflows"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testSecret = "8f742231b10e8888abcd99yyyzzz85a5"
	testToken  = "xoxb-1234-5678-TOPSECRETTOKEN"
	testWF     = "cycle/ops-bot/c-42"
	testHash   = "9d3b0a6e5f1c2b7a8e4d6c0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
)

// sign returns Slack's v0 signature of body at ts with secret.
func sign(secret string, ts int64, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:%s", ts, body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// signedRequest is a POST to the interaction endpoint signed with secret at ts.
func signedRequest(secret string, ts time.Time, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("X-Slack-Signature", sign(secret, ts.Unix(), body))
	return r
}

// click describes a button press for clickBody.
type clickSpec struct {
	User     string
	ActionID string
	Value    string
	ActionTS string // makes otherwise identical clicks distinct requests
}

// buttonValue encodes a value for testWF / index 0 / testHash.
func buttonValue(t testing.TB, kind workflows.DecisionKind) string {
	t.Helper()
	v, err := ButtonValue{WorkflowID: testWF, ActionIndex: 0, ActionHash: testHash, Kind: kind}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// clickPayload is a block_actions payload shaped like Slack's, for a click
// on a message posted by Message.
func clickPayload(t testing.TB, c clickSpec) string {
	t.Helper()
	blocks, err := Message(testPending(2), workflows.NoticeApproval)
	if err != nil {
		t.Fatal(err)
	}
	if c.ActionTS == "" {
		c.ActionTS = "1700000000.000100"
	}
	p := map[string]any{
		"type":         "block_actions",
		"team":         map[string]any{"id": "T0001", "domain": "acme"},
		"user":         map[string]any{"id": c.User, "username": "someone", "team_id": "T0001"},
		"api_app_id":   "A0001",
		"token":        "legacy-verification-token",
		"container":    map[string]any{"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0APPROVE", "is_ephemeral": false},
		"trigger_id":   "1.2.3",
		"channel":      map[string]any{"id": "C0APPROVE", "name": "approvals"},
		"message":      map[string]any{"type": "message", "ts": "1700000000.000001", "text": "Approval needed", "blocks": blocks},
		"response_url": "https://hooks.slack.com/actions/T0001/PAYLOAD-MARKER",
		"actions": []map[string]any{{
			"action_id": c.ActionID,
			"block_id":  blockActions,
			"text":      map[string]any{"type": "plain_text", "text": "Approve"},
			"value":     c.Value,
			"type":      "button",
			"action_ts": c.ActionTS,
		}},
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func formBody(payload string) string { return url.Values{"payload": {payload}}.Encode() }

func testPending(needed int) workflows.PendingAction {
	return workflows.PendingAction{
		WorkflowID: testWF,
		AgentID:    "ops-bot",
		Principal:  "agent:ops-bot",
		Action: policy.RenderedAction{
			Index:     0,
			Type:      "scale-deployment",
			Class:     policy.ClassWrite,
			Risk:      policy.RiskHigh,
			Decision:  policy.Decision{Phase: policy.PhaseAdvisory, Mode: policy.ModeApprove, Approvals: needed, Rule: "advisory phase: every write needs approval"},
			Image:     "registry.example/kubectl@sha256:abcd",
			Command:   []string{"kubectl", "scale", "deploy/web", "--replicas=5"},
			Params:    map[string]any{"deployment": "web", "replicas": 5},
			Rationale: "p99 latency is above the SLO; two more replicas absorb the load.",
			Hash:      testHash,
		},
		Approvers: []string{"U0ALICE", "U0BOB", "U0CAROL"},
		Needed:    needed,
		Deadline:  time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC),
		Thoughts: []workflows.Thought{
			{Step: 1, Content: "Latency p99 is 820ms, SLO is 300ms.", Confidence: 0.91},
			{Step: 2, Content: "CPU is saturated on all 3 replicas.", Confidence: 0.84},
			{Step: 3, Content: "Scaling to 5 should halve per-pod load.", Confidence: 0.7},
			{Step: 4, Content: "Will re-check in 10 minutes.", Confidence: 0.6},
		},
	}
}

// refusedError is a refusal recognised by its Refused method (as a
// Temporal validator error adapted by the lead would be).
type refusedError struct{ reason string }

func (e refusedError) Error() string { return e.reason }
func (e refusedError) Refused() bool { return true }

// fakeDecider models the workflow's Update validator and state for one
// action: allowed approvers, the hash shown, distinct approvals needed,
// single use. A real one is a Temporal Update (tested end to end elsewhere).
type fakeDecider struct {
	mu        sync.Mutex
	approvers []string
	principal string
	hash      string
	needed    int

	calls      []workflows.Decision // every call, refused or not
	accepted   []workflows.Decision // decisions that changed state
	approvedBy []string
	status     string // "" while pending

	err   error         // returned instead of deciding (transient failures)
	block bool          // wait for ctx to end (timeouts)
	delay time.Duration // added latency
}

func newFakeDecider(needed int) *fakeDecider {
	return &fakeDecider{approvers: []string{"U0ALICE", "U0BOB", "U0CAROL"}, principal: "agent:ops-bot", hash: testHash, needed: needed}
}

func (f *fakeDecider) Decide(ctx context.Context, workflowID string, d workflows.Decision) (workflows.DecisionResult, error) {
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	f.calls = append(f.calls, d)
	block, ferr := f.block, f.err
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return workflows.DecisionResult{}, fmt.Errorf("update workflow: %w", ctx.Err())
	}
	if ferr != nil {
		return workflows.DecisionResult{}, ferr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case workflowID != testWF:
		return workflows.DecisionResult{}, fmt.Errorf("%w: no such workflow", ErrRefused)
	case d.Approver == f.principal:
		return workflows.DecisionResult{}, fmt.Errorf("%w: nobody approves their own request", ErrRefused)
	case !slices.Contains(f.approvers, d.Approver):
		return workflows.DecisionResult{}, fmt.Errorf("%w: %s is not an approver of this action", ErrRefused, d.Approver)
	case d.ActionHash != f.hash:
		return workflows.DecisionResult{}, refusedError{"the action changed since the message was posted (stale hash)"}
	case d.Via != "slack":
		return workflows.DecisionResult{}, fmt.Errorf("%w: via %q", ErrRefused, d.Via)
	}
	at := time.Date(2030, 1, 2, 15, 0, 0, 0, time.UTC)
	if f.status != "" || slices.Contains(f.approvedBy, d.Approver) {
		return workflows.DecisionResult{Status: StatusAlreadyDecided, ApprovedBy: slices.Clone(f.approvedBy)}, nil
	}
	f.accepted = append(f.accepted, d)
	switch d.Kind {
	case workflows.DecisionApprove:
		f.approvedBy = append(f.approvedBy, d.Approver)
		if len(f.approvedBy) < f.needed {
			return workflows.DecisionResult{Status: StatusWaiting, ApprovedBy: slices.Clone(f.approvedBy)}, nil
		}
		f.status = StatusApproved
	case workflows.DecisionDeny:
		f.status = StatusDenied
	case workflows.DecisionStop:
		f.status = StatusStopped
	default:
		f.status = StatusRecorded
	}
	return workflows.DecisionResult{Status: f.status, ApprovedBy: slices.Clone(f.approvedBy), DecidedBy: d.Approver, DecidedAt: at}, nil
}

func (f *fakeDecider) snapshot() (calls, accepted []workflows.Decision, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls), slices.Clone(f.accepted), f.status
}

var errUnavailable = errors.New("temporal: service unavailable (connection refused to 10.0.0.7:7233)")

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
