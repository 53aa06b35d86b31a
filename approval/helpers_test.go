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

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
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
	// Pending is the action whose message was clicked. Default: testPending(2).
	Pending *contract.PendingAction
}

// buttonValue encodes a value for testWF / index 0 / testHash.
func buttonValue(t testing.TB, kind contract.DecisionKind) string {
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
	pending := testPending(2)
	if c.Pending != nil {
		pending = *c.Pending
	}
	blocks, err := Message(pending, contract.NoticeApproval)
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

func testPending(needed int) contract.PendingAction {
	return contract.PendingAction{
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
		Thoughts: []contract.Thought{
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

// fakeAnswer is one scripted answer of fakeDecider.
type fakeAnswer struct {
	res contract.DecisionResult
	err error
}

// fakeDecidedAt is when fakeDecider's final answers say the decision was made.
var fakeDecidedAt = time.Date(2030, 1, 2, 15, 0, 0, 0, time.UTC)

// answered scripts a decision the workflow accepted.
func answered(status string, approvedBy ...string) fakeAnswer {
	res := contract.DecisionResult{Status: status, ApprovedBy: approvedBy}
	if status != StatusWaiting && status != StatusAlreadyDecided && len(approvedBy) > 0 {
		res.DecidedBy, res.DecidedAt = approvedBy[len(approvedBy)-1], fakeDecidedAt
	}
	return fakeAnswer{res: res}
}

// refused scripts a decision the workflow's validator refused.
func refused(reason string) fakeAnswer {
	return fakeAnswer{err: fmt.Errorf("%w: %s", ErrRefused, reason)}
}

// fakeDecider stands in for the workflow where only the handler's side is
// under test: it records every call and answers from script, in order.
// Unscripted calls get the answer a workflow accepting everything would
// give (approve answers "waiting" until needed approvals were answered).
// It checks nothing: the workflow's rules (approvers, hashes, distinct
// approvals, second clicks) are exercised on the real AgentCycle in
// handler_workflow_test.go.
type fakeDecider struct {
	mu     sync.Mutex
	needed int
	script []fakeAnswer

	calls    []contract.Decision // every call, refused or not
	accepted []contract.Decision // calls answered with a new state
	approved []string            // approvers of unscripted approvals
	status   string              // the last new state; "" before any

	err   error         // returned instead of deciding (transient failures)
	block bool          // wait for ctx to end (timeouts)
	delay time.Duration // added latency
}

func newFakeDecider(needed int) *fakeDecider { return &fakeDecider{needed: needed} }

func (f *fakeDecider) Decide(ctx context.Context, _ string, d contract.Decision) (contract.DecisionResult, error) {
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	f.calls = append(f.calls, d)
	block, ferr := f.block, f.err
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return contract.DecisionResult{}, fmt.Errorf("update workflow: %w", ctx.Err())
	}
	if ferr != nil {
		return contract.DecisionResult{}, ferr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.next(d)
	if a.err == nil && a.res.Status != StatusAlreadyDecided {
		f.accepted = append(f.accepted, d)
		f.status = a.res.Status
	}
	return a.res, a.err
}

// next pops the script, or makes up the unscripted answer. f.mu is held.
func (f *fakeDecider) next(d contract.Decision) fakeAnswer {
	if len(f.script) > 0 {
		a := f.script[0]
		f.script = f.script[1:]
		return a
	}
	switch d.Kind {
	case contract.DecisionApprove:
		f.approved = append(f.approved, d.Approver)
		if len(f.approved) < f.needed {
			return answered(StatusWaiting, slices.Clone(f.approved)...)
		}
		return answered(StatusApproved, slices.Clone(f.approved)...)
	case contract.DecisionDeny:
		return fakeAnswer{res: contract.DecisionResult{Status: StatusDenied, DecidedBy: d.Approver, DecidedAt: fakeDecidedAt}}
	case contract.DecisionStop:
		return fakeAnswer{res: contract.DecisionResult{Status: StatusStopped, DecidedBy: d.Approver, DecidedAt: fakeDecidedAt}}
	default:
		return fakeAnswer{res: contract.DecisionResult{Status: StatusRecorded, DecidedBy: d.Approver, DecidedAt: fakeDecidedAt}}
	}
}

// answerNext scripts the next answers.
func (f *fakeDecider) answerNext(answers ...fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = append(f.script, answers...)
}

func (f *fakeDecider) snapshot() (calls, accepted []contract.Decision, status string) {
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
