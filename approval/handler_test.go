package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type env struct {
	h     *Handler
	dec   *fakeDecider
	slack *recordingSlack // nil without a notifier
	clock *fakeClock
	logs  *lockedBuffer
}

type envOpt func(*HandlerConfig)

func newEnv(t *testing.T, needed int, withSlack bool, opts ...envOpt) *env {
	t.Helper()
	e := &env{dec: newFakeDecider(needed), clock: &fakeClock{now: time.Now()}, logs: &lockedBuffer{}}
	cfg := HandlerConfig{
		SigningSecret: testSecret,
		Decider:       e.dec,
		Clock:         e.clock.Now,
		Logger:        slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if withSlack {
		e.slack = newRecordingSlack(t)
		cfg.Notifier = newTestNotifier(t, e.slack)
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := NewHandler(cfg)
	require.NoError(t, err)
	e.h = h
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	return e
}

func (e *env) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

// click sends a correctly signed click now.
func (e *env) click(t *testing.T, c clickSpec) *httptest.ResponseRecorder {
	t.Helper()
	return e.serve(signedRequest(testSecret, e.clock.Now(), formBody(clickPayload(t, c))))
}

func approveBy(t *testing.T, user, actionTS string) clickSpec {
	return clickSpec{User: user, ActionID: ActionApprove, Value: buttonValue(t, contract.DecisionApprove), ActionTS: actionTS}
}

func TestHandlerRejectsWithoutDeciding(t *testing.T) {
	valid := func(t *testing.T) string { return formBody(clickPayload(t, approveBy(t, "U0ALICE", ""))) }
	withPayload := func(payload string) func(*testing.T) string {
		return func(*testing.T) string { return formBody(payload) }
	}
	clickWith := func(c clickSpec) func(*testing.T) string {
		return func(t *testing.T) string { return formBody(clickPayload(t, c)) }
	}
	now := time.Now()
	tests := map[string]struct {
		body func(*testing.T) string
		req  func(body string) *http.Request // Default: signed now with testSecret
		code int
		text string
	}{
		"wrong method": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Method = http.MethodGet
				return r
			},
			code: http.StatusMethodNotAllowed, text: "method not allowed",
		},
		"missing signature": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Header.Del("X-Slack-Signature")
				return r
			},
			code: http.StatusUnauthorized, text: "missing Slack signature headers",
		},
		"missing timestamp": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Header.Del("X-Slack-Request-Timestamp")
				return r
			},
			code: http.StatusUnauthorized, text: "missing Slack signature headers",
		},
		"forged signature (other secret)": {
			body: valid,
			req:  func(body string) *http.Request { return signedRequest("not-the-secret", now, body) },
			code: http.StatusUnauthorized, text: "invalid signature",
		},
		"tampered body": {
			body: clickWith(approveBy(t, "U0MALLORY", "")),
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				alice := formBody(clickPayload(t, approveBy(t, "U0ALICE", "")))
				return withBody(r, alice)
			},
			code: http.StatusUnauthorized, text: "invalid signature",
		},
		"signature for another timestamp": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now.Unix()+1, 10))
				return r
			},
			code: http.StatusUnauthorized, text: "invalid signature",
		},
		"signature not hex": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Header.Set("X-Slack-Signature", "v0=zz")
				return r
			},
			code: http.StatusUnauthorized, text: "invalid signature",
		},
		"signature of another version": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Header.Set("X-Slack-Signature", "v1="+strings.TrimPrefix(r.Header.Get("X-Slack-Signature"), "v0="))
				return r
			},
			code: http.StatusUnauthorized, text: "invalid signature",
		},
		"timestamp not a number": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Header.Set("X-Slack-Request-Timestamp", "yesterday")
				return r
			},
			code: http.StatusUnauthorized, text: "invalid request timestamp",
		},
		"expired (signed 6 min ago)": {
			body: valid,
			req:  func(body string) *http.Request { return signedRequest(testSecret, now.Add(-6*time.Minute), body) },
			code: http.StatusUnauthorized, text: "outside the 5-minute window",
		},
		"from the future (6 min ahead)": {
			body: valid,
			req:  func(body string) *http.Request { return signedRequest(testSecret, now.Add(6*time.Minute), body) },
			code: http.StatusUnauthorized, text: "outside the 5-minute window",
		},
		"oversized": {
			body: func(t *testing.T) string { return valid(t) + "&pad=" + strings.Repeat("x", 64<<10) },
			code: http.StatusRequestEntityTooLarge, text: "request body too large",
		},
		"oversized, length unknown": {
			body: func(t *testing.T) string { return valid(t) + "&pad=" + strings.Repeat("x", 64<<10) },
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.ContentLength = -1
				return r
			},
			code: http.StatusRequestEntityTooLarge, text: "request body too large",
		},
		"not a form": {
			body: valid,
			req: func(body string) *http.Request {
				r := signedRequest(testSecret, now, body)
				r.Header.Set("Content-Type", "application/json")
				return r
			},
			code: http.StatusUnsupportedMediaType, text: "application/x-www-form-urlencoded",
		},
		"malformed form": {
			body: func(*testing.T) string { return "payload=%zz" },
			code: http.StatusBadRequest, text: "malformed form body",
		},
		"no payload": {
			body: func(*testing.T) string { return "foo=bar" },
			code: http.StatusBadRequest, text: "expected exactly one payload field",
		},
		"two payloads": {
			body: func(t *testing.T) string { return valid(t) + "&" + valid(t) },
			code: http.StatusBadRequest, text: "expected exactly one payload field",
		},
		"payload not JSON": {
			body: withPayload("{not json"),
			code: http.StatusBadRequest, text: "malformed payload JSON",
		},
		"payload field of the wrong type": {
			body: withPayload(`{"type":"block_actions","user":"U0ALICE","actions":[]}`),
			code: http.StatusBadRequest, text: "malformed payload JSON",
		},
		"wrong interaction type": {
			body: withPayload(`{"type":"view_closed","user":{"id":"U0ALICE"}}`),
			code: http.StatusBadRequest, text: "unsupported interaction type",
		},
		"a view that is not ours": {
			body: withPayload(`{"type":"view_submission","user":{"id":"U0ALICE"},"view":{"callback_id":"other"}}`),
			code: http.StatusBadRequest, text: "unknown view",
		},
		"no action": {
			body: withPayload(`{"type":"block_actions","user":{"id":"U0ALICE"},"actions":[]}`),
			code: http.StatusBadRequest, text: "expected exactly one action",
		},
		"unknown action id": {
			body: clickWith(clickSpec{User: "U0ALICE", ActionID: "airlock_launch", Value: buttonValue(t, contract.DecisionApprove)}),
			code: http.StatusBadRequest, text: "unknown action",
		},
		"bad button value": {
			body: clickWith(clickSpec{User: "U0ALICE", ActionID: ActionApprove, Value: `{"workflow":"x"}`}),
			code: http.StatusBadRequest, text: "invalid button value",
		},
		"approve button carrying a deny": {
			body: clickWith(clickSpec{User: "U0ALICE", ActionID: ActionApprove, Value: buttonValue(t, contract.DecisionDeny)}),
			code: http.StatusBadRequest, text: "invalid button value",
		},
		"no user": {
			body: clickWith(approveBy(t, "", "")),
			code: http.StatusBadRequest, text: "missing user",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, false)
			body := tc.body(t)
			req := signedRequest(testSecret, now, body)
			if tc.req != nil {
				req = tc.req(body)
			}
			rec := e.serve(req)
			assert.Equal(t, tc.code, rec.Code)
			assert.Contains(t, rec.Body.String(), tc.text)
			calls, accepted, status := e.dec.snapshot()
			assert.Empty(t, calls, "the decider saw nothing")
			assert.Empty(t, accepted)
			assert.Empty(t, status)
		})
	}
}

func withBody(r *http.Request, body string) *http.Request {
	r2 := httptest.NewRequest(r.Method, r.URL.String(), strings.NewReader(body))
	r2.Header = r.Header.Clone()
	return r2
}

func TestHandlerRefusalsChangeNothing(t *testing.T) {
	staleHash, err := ButtonValue{WorkflowID: testWF, ActionHash: "0ldha5h", Kind: contract.DecisionApprove}.Encode()
	require.NoError(t, err)
	otherWF, err := ButtonValue{WorkflowID: "cycle/ops-bot/gone", ActionHash: testHash, Kind: contract.DecisionApprove}.Encode()
	require.NoError(t, err)
	// What the workflow answers is scripted: the handler's part is to show
	// the refusal, change nothing and tell the clicker. The real validator's
	// refusals are in handler_workflow_test.go.
	tests := map[string]struct {
		click  clickSpec
		answer fakeAnswer
		text   string
	}{
		"unknown user": {
			clickSpec{User: "U0MALLORY", ActionID: ActionApprove, Value: buttonValue(t, contract.DecisionApprove)},
			refused("U0MALLORY is not an approver of this action"),
			"refused: U0MALLORY is not an approver of this action",
		},
		"stale hash (a Refused() error)": {
			clickSpec{User: "U0ALICE", ActionID: ActionApprove, Value: staleHash},
			fakeAnswer{err: refusedError{"the action changed since the message was posted (stale hash)"}},
			"refused: the action changed since the message was posted (stale hash)",
		},
		"unknown workflow": {
			clickSpec{User: "U0ALICE", ActionID: ActionApprove, Value: otherWF},
			refused("no such workflow"),
			"refused: no such workflow",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, true)
			e.dec.answerNext(tc.answer)
			rec := e.click(t, tc.click)
			assert.Equal(t, http.StatusForbidden, rec.Code)
			assert.Equal(t, tc.text+"\n", rec.Body.String())

			calls, accepted, status := e.dec.snapshot()
			assert.Len(t, calls, 1, "the workflow's validator was asked")
			assert.Empty(t, accepted, "and refused: nothing changed")
			assert.Empty(t, status)

			e.h.Wait()
			got := e.slack.received()
			require.Len(t, got, 1, "no message edit, one note to the clicker")
			assert.Equal(t, "chat.postEphemeral", got[0].Method)
			assert.Equal(t, tc.click.User, got[0].Form.Get("user"))
			assert.Contains(t, got[0].Form.Get("text"), "was refused: "+strings.TrimPrefix(tc.text, "refused: "))
		})
	}
}

type notRefused struct{}

func (notRefused) Error() string { return "busy" }
func (notRefused) Refused() bool { return false }

func TestRefusal(t *testing.T) {
	tests := map[string]struct {
		err     error
		refused bool
		reason  string
	}{
		"sentinel":             {fmt.Errorf("%w: U1 is not an approver", ErrRefused), true, "U1 is not an approver"},
		"sentinel, wrapped":    {fmt.Errorf("update decide: %w", fmt.Errorf("%w: stale hash", ErrRefused)), true, "stale hash"},
		"bare sentinel":        {ErrRefused, true, "not allowed"},
		"Refused() true":       {fmt.Errorf("validator: %w", refusedError{"requester cannot approve"}), true, "validator: requester cannot approve"},
		"Refused() false":      {notRefused{}, false, ""},
		"plain error":          {errUnavailable, false, ""},
		"deadline":             {context.DeadlineExceeded, false, ""},
		"reason is one line":   {fmt.Errorf("%w: a\nb", ErrRefused), true, "a b"},
		"reason is kept short": {fmt.Errorf("%w: %s", ErrRefused, strings.Repeat("x", 1000)), true, strings.Repeat("x", 297) + "…"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reason, refused := refusal(tc.err)
			assert.Equal(t, tc.refused, refused)
			assert.Equal(t, tc.reason, reason)
		})
	}
}

func TestHandlerApproveDoubleClickAndReplay(t *testing.T) {
	e := newEnv(t, 1, true)
	e.dec.answerNext(answered(StatusApproved, "U0ALICE"), answered(StatusAlreadyDecided, "U0ALICE"))
	first := signedRequest(testSecret, e.clock.Now(), formBody(clickPayload(t, approveBy(t, "U0ALICE", "1.1"))))
	replay := withBody(first, formBody(clickPayload(t, approveBy(t, "U0ALICE", "1.1"))))

	rec := e.serve(first)
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "approved\n", rec.Body.String())

	// Same user clicks again: a new, valid request.
	rec = e.click(t, approveBy(t, "U0ALICE", "1.2"))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "already decided\n", rec.Body.String())

	// The first request, captured and sent again.
	rec = e.serve(replay)
	assert.Equal(t, http.StatusConflict, rec.Code)
	assert.Contains(t, rec.Body.String(), "replayed request")

	calls, accepted, status := e.dec.snapshot()
	assert.Len(t, calls, 2, "the replay never reached the decider")
	require.Len(t, accepted, 1, "only one decision changed state")
	assert.Equal(t, contract.Decision{ActionIndex: 0, ActionHash: testHash, Kind: contract.DecisionApprove, Approver: "U0ALICE", Via: "slack"}, accepted[0])
	assert.Equal(t, StatusApproved, status)

	e.h.Wait()
	got := e.slack.received()
	require.Len(t, got, 2)
	assert.Equal(t, "chat.update", got[0].Method)
	assert.Equal(t, "C0APPROVE", got[0].Form.Get("channel"))
	assert.Equal(t, "1700000000.000001", got[0].Form.Get("ts"))
	assert.Empty(t, actionIDs(got[0].blocks(t)), "buttons replaced by the outcome")
	assert.Contains(t, got[0].texts(t), "*Approved* by <@U0ALICE> at <!date^")
	assert.Contains(t, got[0].texts(t), "scale-deployment")
	assert.Equal(t, "chat.postEphemeral", got[1].Method, "the second click only tells the clicker")
	assert.Contains(t, got[1].Form.Get("text"), "already decided")
}

func TestHandlerConcurrentReplaysDecideOnce(t *testing.T) {
	e := newEnv(t, 1, false)
	body := formBody(clickPayload(t, approveBy(t, "U0ALICE", "")))
	ts := e.clock.Now()
	const n = 20
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i] = e.serve(signedRequest(testSecret, ts, body)).Code })
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	assert.Equal(t, map[int]int{http.StatusOK: 1, http.StatusConflict: n - 1}, count)
	calls, accepted, _ := e.dec.snapshot()
	assert.Len(t, calls, 1)
	assert.Len(t, accepted, 1)
}

// While an action waits for more approvers its message keeps its buttons
// and says who approved so far; the final answer replaces them. (That two
// distinct approvers are needed is the workflow's rule, exercised in
// TestHandlerOnTheCycleCriticalNeedsTwoApprovers.)
func TestHandlerWaitingKeepsTheButtons(t *testing.T) {
	e := newEnv(t, 2, true)
	e.dec.answerNext(
		answered(StatusWaiting, "U0ALICE"),
		answered(StatusAlreadyDecided, "U0ALICE"),
		answered(StatusApproved, "U0ALICE", "U0BOB"),
	)

	rec := e.click(t, approveBy(t, "U0ALICE", "1.1"))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "waiting\n", rec.Body.String())
	e.h.Wait()

	rec = e.click(t, approveBy(t, "U0ALICE", "1.2"))
	assert.Equal(t, "already decided\n", rec.Body.String())

	rec = e.click(t, approveBy(t, "U0BOB", "1.3"))
	assert.Equal(t, "approved\n", rec.Body.String())
	e.h.Wait()

	_, accepted, status := e.dec.snapshot()
	assert.Len(t, accepted, 2)
	assert.Equal(t, StatusApproved, status)

	got := e.slack.received()
	require.Len(t, got, 3)
	assert.Equal(t, "chat.update", got[0].Method)
	assert.Equal(t, []string{ActionApprove, ActionDeny, ActionDenyWithReason, ActionKillAgent}, actionIDs(got[0].blocks(t)), "still waiting: buttons stay")
	assert.Contains(t, got[0].texts(t), "approved so far by <@U0ALICE> (1 of 2)")
	assert.Equal(t, "chat.postEphemeral", got[1].Method)
	assert.Equal(t, "chat.update", got[2].Method)
	assert.Empty(t, actionIDs(got[2].blocks(t)))
	assert.Contains(t, got[2].texts(t), "*Approved* by <@U0ALICE>, <@U0BOB> at")
}

func TestHandlerOtherDecisions(t *testing.T) {
	tests := map[string]struct {
		actionID string
		kind     contract.DecisionKind
		status   string
		says     string
	}{
		"deny":     {ActionDeny, contract.DecisionDeny, StatusDenied, "*Denied* by <@U0BOB> at"},
		"stop":     {ActionStop, contract.DecisionStop, StatusStopped, "*Stopped* by <@U0BOB> at"},
		"agree":    {ActionAgree, contract.DecisionAgree, StatusRecorded, "*Feedback recorded* (<@U0BOB> agreed)"},
		"disagree": {ActionDisagree, contract.DecisionDisagree, StatusRecorded, "*Feedback recorded* (<@U0BOB> disagreed)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, true)
			rec := e.click(t, clickSpec{User: "U0BOB", ActionID: tc.actionID, Value: buttonValue(t, tc.kind)})
			require.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, tc.status+"\n", rec.Body.String())
			_, accepted, _ := e.dec.snapshot()
			require.Len(t, accepted, 1)
			assert.Equal(t, tc.kind, accepted[0].Kind)

			e.h.Wait()
			got := e.slack.received()
			require.Len(t, got, 1)
			assert.Contains(t, got[0].texts(t), tc.says)
			assert.Empty(t, actionIDs(got[0].blocks(t)))
		})
	}
}

func TestHandlerDeciderFailures(t *testing.T) {
	t.Run("outage: 502, generic, retry allowed", func(t *testing.T) {
		e := newEnv(t, 1, false)
		e.dec.err = errUnavailable
		body := formBody(clickPayload(t, approveBy(t, "U0ALICE", "")))
		ts := e.clock.Now()

		rec := e.serve(signedRequest(testSecret, ts, body))
		assert.Equal(t, http.StatusBadGateway, rec.Code)
		assert.Equal(t, "could not record the decision; try again\n", rec.Body.String())
		assert.NotContains(t, rec.Body.String(), "10.0.0.7", "internal errors are not shown")

		e.dec.mu.Lock()
		e.dec.err = nil
		e.dec.mu.Unlock()
		rec = e.serve(signedRequest(testSecret, ts, body))
		assert.Equal(t, http.StatusOK, rec.Code, "nothing was decided, so the same request may be retried")
		_, accepted, _ := e.dec.snapshot()
		assert.Len(t, accepted, 1)
	})
	t.Run("timeout: 503 within the deadline", func(t *testing.T) {
		e := newEnv(t, 1, false, func(c *HandlerConfig) { c.DecideTimeout = 50 * time.Millisecond })
		e.dec.block = true
		start := time.Now()
		rec := e.click(t, approveBy(t, "U0ALICE", ""))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.Equal(t, "decision timed out; try again\n", rec.Body.String())
		assert.Less(t, time.Since(start), time.Second)
	})
}

func TestHandlerReplayAfterWindowIsExpired(t *testing.T) {
	e := newEnv(t, 1, false)
	body := formBody(clickPayload(t, approveBy(t, "U0ALICE", "")))
	ts := e.clock.Now()
	require.Equal(t, http.StatusOK, e.serve(signedRequest(testSecret, ts, body)).Code)
	assert.Equal(t, 1, e.h.replays.len())

	e.clock.Advance(Window + time.Second)
	rec := e.serve(signedRequest(testSecret, ts, body))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Contains(t, rec.Body.String(), "outside the 5-minute window")
	calls, _, _ := e.dec.snapshot()
	assert.Len(t, calls, 1)
}

// The handler's own window, not slack-go's: each request is freshly and
// correctly signed by the wall clock (which slack-go checks), and only the
// handler's clock says how old it is.
func TestHandlerWindowUsesItsClock(t *testing.T) {
	signed := time.Unix(time.Now().Unix(), 0)
	tests := map[string]struct {
		age  time.Duration // by the handler's clock
		code int
	}{
		"4m59s old":   {Window - time.Second, http.StatusOK},
		"5m01s old":   {Window + time.Second, http.StatusUnauthorized},
		"4m59s ahead": {-Window + time.Second, http.StatusOK},
		"5m01s ahead": {-Window - time.Second, http.StatusUnauthorized},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, false)
			e.clock.now = signed.Add(tc.age)
			rec := e.serve(signedRequest(testSecret, signed, formBody(clickPayload(t, approveBy(t, "U0ALICE", "")))))
			assert.Equal(t, tc.code, rec.Code, rec.Body.String())
			calls, _, _ := e.dec.snapshot()
			if tc.code == http.StatusOK {
				assert.Equal(t, "approved\n", rec.Body.String())
				assert.Len(t, calls, 1)
				return
			}
			assert.Equal(t, "request timestamp outside the 5-minute window\n", rec.Body.String())
			assert.Empty(t, calls, "nothing is decided")
		})
	}
}

func TestReplayCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newReplayCache(2, Window)
	assert.Equal(t, reserved, c.reserve("a", now.Unix(), now))
	assert.Equal(t, replayed, c.reserve("a", now.Unix(), now))
	assert.Equal(t, reserved, c.reserve("b", now.Unix(), now))
	assert.Equal(t, cacheFull, c.reserve("c", now.Unix(), now), "full of live entries: fail closed")
	c.release("b")
	assert.Equal(t, reserved, c.reserve("c", now.Unix(), now))

	later := now.Add(Window + 2*time.Second)
	assert.Equal(t, reserved, c.reserve("d", later.Unix(), later), "expired entries make room")
	assert.Equal(t, 1, c.len())
}

func TestHandlerNeverLogsSecrets(t *testing.T) {
	e := newEnv(t, 1, true)
	e.dec.answerNext(answered(StatusApproved, "U0ALICE"), refused("U0MALLORY is not an approver"), refused("U0MALLORY is not an approver"))
	e.click(t, approveBy(t, "U0ALICE", "1"))                                                                // accepted
	e.click(t, approveBy(t, "U0MALLORY", "2"))                                                              // refused
	e.serve(signedRequest("wrong", e.clock.Now(), formBody(clickPayload(t, approveBy(t, "U0ALICE", "3"))))) // forged
	e.dec.err = fmt.Errorf("update: %w", errUnavailable)
	e.click(t, approveBy(t, "U0BOB", "4")) // outage
	e.slack.mu.Lock()
	e.slack.fail = "invalid_auth"
	e.slack.mu.Unlock()
	e.dec.err = nil
	e.click(t, approveBy(t, "U0MALLORY", "5")) // refused, and the ephemeral fails
	e.h.Wait()

	logs := e.logs.String()
	require.Contains(t, logs, "slack decision", "decisions are logged")
	require.Contains(t, logs, "invalid_auth", "edit failures are logged")
	for _, secret := range []string{testSecret, testToken, "PAYLOAD-MARKER", "payload=", `"actions"`} {
		assert.NotContains(t, logs, secret)
	}

	cfg := HandlerConfig{SigningSecret: testSecret, Notifier: newTestNotifier(t, e.slack)}
	var js bytes.Buffer
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "cfg", cfg, "handler", e.h, "notifier", cfg.Notifier)
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %#v", cfg, cfg, cfg, e.h), fmt.Sprintf("%v %+v %#v", e.h, cfg.Notifier, cfg.Notifier), js.String(), string(raw)} {
		assert.NotContains(t, s, testSecret)
		assert.NotContains(t, s, testToken)
	}
}

func TestHandlerOverHTTP(t *testing.T) {
	e := newEnv(t, 1, false)
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()

	body := formBody(clickPayload(t, approveBy(t, "U0ALICE", "")))
	req := signedRequest(testSecret, e.clock.Now(), body)
	out, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/slack/interactions", strings.NewReader(body))
	require.NoError(t, err)
	out.Header = req.Header
	resp, err := client.Do(out)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "approved\n", readAll(t, resp.Body))
}

func TestNewHandlerValidates(t *testing.T) {
	tests := map[string]HandlerConfig{
		"no secret":         {Decider: newFakeDecider(1)},
		"no decider":        {SigningSecret: testSecret},
		"timeout too long":  {SigningSecret: testSecret, Decider: newFakeDecider(1), DecideTimeout: 3 * time.Second},
		"negative max body": {SigningSecret: testSecret, Decider: newFakeDecider(1), MaxBodyBytes: -1},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewHandler(cfg)
			assert.Error(t, err)
		})
	}
	h, err := NewHandler(HandlerConfig{SigningSecret: testSecret, Decider: newFakeDecider(1)})
	require.NoError(t, err)
	require.NoError(t, h.Close())
	require.NoError(t, h.Close(), "idempotent")
	h.Wait()
}

func TestHandlerCloseBoundsStuckEdits(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select { // Slack never answers
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hung.Close()
	defer close(release)
	n, err := NewNotifier(testToken, WithAPIURL(hung.URL+"/"))
	require.NoError(t, err)
	e := newEnv(t, 1, false, func(c *HandlerConfig) { c.Notifier = n; c.EditTimeout = 200 * time.Millisecond })

	require.Equal(t, http.StatusOK, e.click(t, approveBy(t, "U0ALICE", "1")).Code)
	start := time.Now()
	require.NoError(t, e.h.Close())
	assert.Less(t, time.Since(start), 2*time.Second, "Close does not wait for Slack forever")
	assert.Contains(t, e.logs.String(), "slack message edit failed")

	// After Close, clicks are still decided; nothing is queued.
	require.Equal(t, http.StatusOK, e.click(t, approveBy(t, "U0BOB", "2")).Code)
	e.h.Wait()
}
