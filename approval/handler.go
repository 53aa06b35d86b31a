package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/airlockhq/airlock/contract"
)

// Decider hands a verified human decision to the workflow (in production a
// Temporal Update whose validator refuses bad approvals). An error that
// wraps ErrRefused or implements interface{ Refused() bool } is a refusal
// (the clicker is not an allowed approver, the action hash is stale, the
// requester approves their own request, …) and is shown to the user; any
// other error is an outage and is not.
type Decider interface {
	Decide(ctx context.Context, workflowID string, d contract.Decision) (contract.DecisionResult, error)
}

// DeciderFunc adapts a function to Decider.
type DeciderFunc func(ctx context.Context, workflowID string, d contract.Decision) (contract.DecisionResult, error)

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, workflowID string, d contract.Decision) (contract.DecisionResult, error) {
	return f(ctx, workflowID, d)
}

// AgentKiller kills an agent for a verified click on a message's "Kill
// agent" button (in production the Agent workflow's kill Update, whose
// validator refuses anyone who is not an approver of that agent). It
// should return once the kill is accepted, without waiting for the sweep.
// Refusals are reported as for Decider.
type AgentKiller interface {
	KillAgent(ctx context.Context, agentID string, req contract.KillRequest) error
}

// KillerFunc adapts a function to AgentKiller.
type KillerFunc func(ctx context.Context, agentID string, req contract.KillRequest) error

// KillAgent calls f.
func (f KillerFunc) KillAgent(ctx context.Context, agentID string, req contract.KillRequest) error {
	return f(ctx, agentID, req)
}

// ErrRefused marks a decision the workflow refused. Wrap it with the reason:
// fmt.Errorf("%w: U123 is not an approver", approval.ErrRefused).
var ErrRefused = errors.New("refused")

// Window is how far a request's timestamp may be from the clock (Slack's
// replay window).
const Window = 5 * time.Minute

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// SigningSecret is the Slack app's signing secret. Required.
	SigningSecret string `json:"-"`
	// Decider records decisions. Required.
	Decider Decider `json:"-"`
	// Killer serves the "Kill agent" button. Default: nil (the button is
	// answered 400 "kill switch not enabled here").
	Killer AgentKiller `json:"-"`
	// Promoter serves the "Promote" button of promotion offers. Default:
	// nil (answered 400 "promotion not enabled here").
	Promoter AgentPromoter `json:"-"`
	// Notifier, if set, edits the clicked message after a decision and
	// tells a refused user why (ephemeral). Default: nil (no edits; the
	// workflow's UpdateApprovalMessage activity still records the end).
	Notifier *Notifier `json:"-"`
	// Clock is used for the timestamp window and the replay cache.
	// Default: time.Now. slack-go's verifier also checks the window against
	// the wall clock, so a test clock must stay within minutes of it.
	Clock func() time.Time `json:"-"`
	// MaxBodyBytes bounds a request body. Default: 64 KiB.
	MaxBodyBytes int64
	// DecideTimeout bounds the Decider call; Slack wants an answer within
	// 3 s. Default: 2.5 s.
	DecideTimeout time.Duration
	// EditTimeout bounds each message edit. Default: 10 s.
	EditTimeout time.Duration
	// ReplayCacheSize bounds the remembered request signatures; when full
	// (after dropping expired ones) requests are refused with 503.
	// Default: 65536.
	ReplayCacheSize int
	// Logger receives structured logs; secrets and request bodies are never
	// logged. Default: slog.Default().
	Logger *slog.Logger `json:"-"`
}

// String keeps the signing secret out of %v.
func (c HandlerConfig) String() string {
	return fmt.Sprintf("approval.HandlerConfig{MaxBodyBytes: %d, DecideTimeout: %s, EditTimeout: %s, Notifier: %v}",
		c.MaxBodyBytes, c.DecideTimeout, c.EditTimeout, c.Notifier != nil)
}

// GoString keeps the signing secret out of %#v.
func (c HandlerConfig) GoString() string { return c.String() }

// LogValue keeps the signing secret out of slog.
func (c HandlerConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Handler serves Slack's interaction requests (the app's Request URL):
// it authenticates each request (HMAC signature, 5-minute window, no
// replays), turns a button click into a contract.Decision by the clicking
// user, asks the Decider, answers Slack at once and edits the message in
// the background. Call Close when done.
//
// Answers (text/plain, one short line):
//
//	200 the decision's status ("approved", "waiting", "denied", "stopped",
//	    "recorded") or "already decided" (a harmless second click)
//	400 malformed form, payload or JSON; not a block_actions click; unknown
//	    action_id; a button value this package did not produce
//	401 missing or invalid signature; timestamp outside ±5 minutes
//	403 "refused: <reason>" from the workflow (not an approver, stale hash, …)
//	405 not POST · 413 body over MaxBodyBytes · 415 not form-encoded
//	409 a replay of a request already processed (nothing happens twice)
//	502 the Decider failed · 503 it timed out, or the replay cache is full
//
// Nothing is decided for any 4xx but 403, and a 403 changes nothing.
//
// A "… with reason" button is answered 200 "reason asked" once its modal is
// open (502 if Slack would not open it; 400 without a Notifier). The
// modal's view_submission is authenticated and decided like a click, but
// answered as Slack's modals want: an empty 200 closes the modal after a
// decision; a blank or too long reason, a refusal or an outage is a 200
// with response_action "errors" shown under the reason (only the outage
// may be retried with the same request).
type Handler struct {
	secret        string
	decider       Decider
	killer        AgentKiller
	promoter      AgentPromoter
	notifier      *Notifier
	clock         func() time.Time
	maxBody       int64
	decideTimeout time.Duration
	editTimeout   time.Duration
	log           *slog.Logger
	replays       *replayCache

	// Message edits run one at a time, in order, on one goroutine owned by
	// the Handler; mu guards the queue and the pending count.
	mu      sync.Mutex
	idle    *sync.Cond
	pending int
	closed  bool
	edits   chan edit
	done    chan struct{}
	// stopEdits cancels edits still running when Close has waited long enough.
	editCtx   context.Context
	stopEdits context.CancelFunc
}

var _ http.Handler = (*Handler)(nil)

type edit struct {
	what  string
	ref   MessageRef // set for message updates
	final bool
	run   func(ctx context.Context) error
	attrs []any
}

// editQueue bounds waiting edits; beyond it edits are dropped (the workflow
// activity still records the final state).
const editQueue = 256

// NewHandler validates cfg and returns a Handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.SigningSecret == "" {
		return nil, errors.New("new handler: empty signing secret")
	}
	if cfg.Decider == nil {
		return nil, errors.New("new handler: nil decider")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 64 << 10
	}
	if cfg.DecideTimeout == 0 {
		cfg.DecideTimeout = 2500 * time.Millisecond
	}
	if cfg.EditTimeout == 0 {
		cfg.EditTimeout = 10 * time.Second
	}
	if cfg.ReplayCacheSize == 0 {
		cfg.ReplayCacheSize = 1 << 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.MaxBodyBytes < 0:
		return nil, errors.New("new handler: negative max body size")
	case cfg.DecideTimeout < 0 || cfg.DecideTimeout >= 3*time.Second:
		return nil, fmt.Errorf("new handler: decide timeout %s must be positive and under Slack's 3 s", cfg.DecideTimeout)
	case cfg.EditTimeout < 0:
		return nil, errors.New("new handler: negative edit timeout")
	case cfg.ReplayCacheSize < 0:
		return nil, errors.New("new handler: negative replay cache size")
	}
	h := &Handler{
		secret:        cfg.SigningSecret,
		decider:       cfg.Decider,
		killer:        cfg.Killer,
		promoter:      cfg.Promoter,
		notifier:      cfg.Notifier,
		clock:         cfg.Clock,
		maxBody:       cfg.MaxBodyBytes,
		decideTimeout: cfg.DecideTimeout,
		editTimeout:   cfg.EditTimeout,
		log:           cfg.Logger,
		replays:       newReplayCache(cfg.ReplayCacheSize, Window),
		done:          make(chan struct{}),
	}
	h.editCtx, h.stopEdits = context.WithCancel(context.Background())
	h.idle = sync.NewCond(&h.mu)
	if h.notifier == nil {
		h.closed = true // nothing to edit with
		close(h.done)
		return h, nil
	}
	h.edits = make(chan edit, editQueue)
	go h.editLoop()
	return h, nil
}

// String and GoString keep the signing secret out of %v and %#v.
func (h *Handler) String() string   { return "approval.Handler" }
func (h *Handler) GoString() string { return h.String() }

// Wait blocks until every message edit queued so far has been made.
func (h *Handler) Wait() {
	h.mu.Lock()
	for h.pending > 0 {
		h.idle.Wait()
	}
	h.mu.Unlock()
}

// Close stops accepting message edits, gives the queued ones up to
// EditTimeout in total to finish, cancels the rest and stops the edit
// goroutine. Decisions are still served after Close, without edits (the
// workflow's own message update still records the outcome). Close is
// idempotent.
func (h *Handler) Close() error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.edits)
	}
	h.mu.Unlock()
	grace := time.AfterFunc(h.editTimeout, h.stopEdits)
	<-h.done
	grace.Stop()
	h.stopEdits()
	return nil
}

func (h *Handler) enqueue(e edit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	select {
	case h.edits <- e:
		h.pending++
	default:
		h.log.Warn("slack message edit dropped: queue full", append([]any{"edit", e.what}, e.attrs...)...)
	}
}

func (h *Handler) editLoop() {
	defer close(h.done)
	// finals remembers messages that already show a final outcome, so a
	// late "waiting" edit never brings their buttons back.
	finals := map[MessageRef]time.Time{}
	for e := range h.edits {
		h.runEdit(e, finals)
		h.mu.Lock()
		h.pending--
		if h.pending == 0 {
			h.idle.Broadcast()
		}
		h.mu.Unlock()
	}
}

func (h *Handler) runEdit(e edit, finals map[MessageRef]time.Time) {
	if e.ref != (MessageRef{}) {
		if _, done := finals[e.ref]; done {
			return
		}
		if e.final {
			now := time.Now()
			if len(finals) > 1024 {
				for ref, at := range finals {
					if now.Sub(at) > time.Hour {
						delete(finals, ref)
					}
				}
			}
			finals[e.ref] = now
		}
	}
	ctx, cancel := context.WithTimeout(h.editCtx, h.editTimeout)
	defer cancel()
	if err := e.run(ctx); err != nil {
		h.log.Warn("slack message edit failed", append([]any{"edit", e.what, "error", err}, e.attrs...)...)
	}
}

// reject answers a request that is not acted upon.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, code int, msg string, attrs ...any) {
	level := slog.LevelInfo
	if code == http.StatusUnauthorized {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "slack interaction rejected",
		append([]any{"status", code, "reason", msg, "remote", r.RemoteAddr}, attrs...)...)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

func answer(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, msg+"\n")
}

// ServeHTTP authenticates the request before reading anything from it,
// then decides. Nothing is decided for any 4xx answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, r, http.StatusMethodNotAllowed, "method not allowed")
		return
	}

	// 1. Timestamp within the window of our clock (slack-go checks the wall
	// clock too, but cannot be given a clock).
	sig, stamp := r.Header.Get("X-Slack-Signature"), r.Header.Get("X-Slack-Request-Timestamp")
	if sig == "" || stamp == "" {
		h.reject(w, r, http.StatusUnauthorized, "missing Slack signature headers")
		return
	}
	ts, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		h.reject(w, r, http.StatusUnauthorized, "invalid request timestamp")
		return
	}
	now := h.clock()
	if d := now.Sub(time.Unix(ts, 0)); d > Window || d < -Window {
		h.reject(w, r, http.StatusUnauthorized, "request timestamp outside the 5-minute window")
		return
	}

	// 2. Verify while reading: the body goes through the HMAC as it is read.
	verifier, err := slack.NewSecretsVerifier(r.Header, h.secret)
	if err != nil {
		msg := "invalid signature"
		if errors.Is(err, slack.ErrExpiredTimestamp) {
			msg = "request timestamp outside the 5-minute window"
		}
		h.reject(w, r, http.StatusUnauthorized, msg)
		return
	}
	if r.ContentLength > h.maxBody {
		h.reject(w, r, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	body, err := io.ReadAll(io.TeeReader(http.MaxBytesReader(w, r.Body, h.maxBody), &verifier))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		h.reject(w, r, http.StatusBadRequest, "cannot read request body")
		return
	}
	if err := verifier.Ensure(); err != nil {
		h.reject(w, r, http.StatusUnauthorized, "invalid signature")
		return
	}

	// 3. Not seen before. The reservation is kept unless the decision fails
	// for a transient reason. The key is the signature in lower case: its
	// hex is verified in either case, so a replay may change the case.
	replayKey := strings.ToLower(sig)
	switch h.replays.reserve(replayKey, ts, now) {
	case replayed:
		h.reject(w, r, http.StatusConflict, "replayed request: already processed")
		return
	case cacheFull:
		h.reject(w, r, http.StatusServiceUnavailable, "too many requests; try again")
		return
	}
	keep := false
	defer func() {
		if !keep {
			h.replays.release(replayKey)
		}
	}()

	// 4. Parse: a block_actions payload with one of our buttons.
	click, msg := parseClick(r.Header.Get("Content-Type"), body)
	if msg != "" {
		keep = true // authentic but malformed: the same bytes stay malformed
		code := http.StatusBadRequest
		if msg == errContentType {
			code = http.StatusUnsupportedMediaType
		}
		h.reject(w, r, code, msg)
		return
	}

	if click.kill != nil {
		keep = h.kill(w, r, click)
		return
	}
	if click.promote != nil {
		keep = h.promote(w, r, click)
		return
	}
	if click.askReason {
		keep = h.askReason(w, r, click)
		return
	}
	if click.submitted && click.badReason != "" {
		keep = true // the same bytes carry the same reason
		h.log.Info("slack reason not accepted", "workflow_id", click.value.WorkflowID, "reason", click.badReason)
		viewErrors(w, click.badReason)
		return
	}

	// 5. Decide, bounded so Slack gets its answer in time. A click whose
	// request went away is still decided: the user did click.
	d := contract.Decision{
		ActionIndex: click.value.ActionIndex,
		ActionHash:  click.value.ActionHash,
		Kind:        click.value.Kind,
		Approver:    click.user,
		Via:         "slack",
		Comment:     click.comment,
	}
	// The comment is not logged: the decision's history and audit trail
	// keep it, logs need not.
	attrs := []any{"workflow_id", click.value.WorkflowID, "action_index", d.ActionIndex, "decision", string(d.Kind), "approver", d.Approver, "with_comment", d.Comment != ""}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.decideTimeout)
	res, err := h.decider.Decide(ctx, click.value.WorkflowID, d)
	cancel()
	if err != nil {
		if reason, refused := refusal(err); refused {
			keep = true
			if click.submitted {
				// Shown in the modal, which stays open.
				h.log.Info("slack interaction rejected", append(attrs, "status", http.StatusForbidden, "reason", "refused: "+reason)...)
				viewErrors(w, "Refused: "+reason)
				return
			}
			h.reject(w, r, http.StatusForbidden, "refused: "+reason, attrs...)
			h.tell(click, fmt.Sprintf(":no_entry_sign: Your %s was refused: %s", d.Kind, escape(reason)), attrs)
			return
		}
		h.log.Error("slack decision failed", append(attrs, "error", err)...)
		if click.submitted {
			viewErrors(w, "Could not record the decision; try again.")
			return
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			h.reject(w, r, http.StatusServiceUnavailable, "decision timed out; try again", attrs...)
			return
		}
		h.reject(w, r, http.StatusBadGateway, "could not record the decision; try again", attrs...)
		return
	}
	keep = true
	h.log.Info("slack decision", append(attrs, "status", res.Status)...)

	if res.Status == StatusAlreadyDecided {
		if click.submitted {
			closeView(w)
		} else {
			answer(w, "already decided")
		}
		h.tell(click, ":information_source: This action was already decided; your click changed nothing.", attrs)
		return
	}
	if click.submitted {
		closeView(w)
	} else {
		answer(w, res.Status)
	}
	h.update(click, d, res, attrs)
}

// askReason serves a verified click on "Deny with reason" or "Stop with
// reason": it opens the reason modal, which carries the button's value.
// Nothing is decided until the modal is submitted. It reports whether the
// request's replay reservation is to be kept.
func (h *Handler) askReason(w http.ResponseWriter, r *http.Request, c click) bool {
	attrs := []any{"workflow_id", c.value.WorkflowID, "action_index", c.value.ActionIndex, "decision", string(c.value.Kind), "by", c.user}
	if h.notifier == nil {
		h.reject(w, r, http.StatusBadRequest, "reasons not enabled here (no Slack bot token)", attrs...)
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.decideTimeout)
	err := h.notifier.OpenReasonModal(ctx, c.triggerID, ReasonMetadata{Ref: c.ref, Value: c.value})
	cancel()
	if err != nil {
		h.log.Error("slack reason modal failed", append(attrs, "error", err)...)
		h.reject(w, r, http.StatusBadGateway, "could not ask for a reason; try again", attrs...)
		return false
	}
	h.log.Info("slack reason asked", attrs...)
	answer(w, "reason asked")
	return true
}

// viewErrors answers a modal submission with an error under its reason
// input; the modal stays open.
func viewErrors(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(slack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: clipRaw(msg, 300)}))
}

// closeView answers a modal submission by closing the modal.
func closeView(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }

// kill serves a verified click on "Kill agent": the clicking user asks the
// Agent workflow to kill the agent; its validator decides whether they may.
// It reports whether the request's replay reservation is to be kept.
func (h *Handler) kill(w http.ResponseWriter, r *http.Request, c click) bool {
	attrs := []any{"agent", c.kill.AgentID, "workflow_id", c.kill.WorkflowID, "by", c.user}
	if h.killer == nil {
		h.reject(w, r, http.StatusBadRequest, "kill switch not enabled here", attrs...)
		return true
	}
	req := contract.KillRequest{By: c.user, Via: "slack", Reason: "Kill agent clicked on the message of " + c.kill.WorkflowID}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.decideTimeout)
	err := h.killer.KillAgent(ctx, c.kill.AgentID, req)
	cancel()
	if err != nil {
		if reason, refused := refusal(err); refused {
			h.reject(w, r, http.StatusForbidden, "refused: "+reason, attrs...)
			h.tell(c, ":no_entry_sign: Your kill was refused: "+escape(reason), attrs)
			return true
		}
		h.log.Error("slack kill failed", append(attrs, "error", err)...)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			h.reject(w, r, http.StatusServiceUnavailable, "kill timed out; try again", attrs...)
			return false
		}
		h.reject(w, r, http.StatusBadGateway, "could not kill the agent; try again", attrs...)
		return false
	}
	h.log.Warn("slack kill", attrs...)
	answer(w, "agent killed")
	h.tell(c, fmt.Sprintf(":octagonal_sign: Agent %s is killed: new cycles are refused, its running cycles, Jobs and credentials are being stopped. Resuming needs two approvers (`airlock agent resume`).", code(c.kill.AgentID, 100)), attrs)
	return true
}

// refusal reports whether err is a refusal, and its reason for the user.
func refusal(err error) (string, bool) {
	var r interface{ Refused() bool }
	if !errors.Is(err, ErrRefused) && !(errors.As(err, &r) && r.Refused()) {
		return "", false
	}
	reason := oneLine(err.Error())
	if i := strings.LastIndex(reason, ErrRefused.Error()+": "); i >= 0 {
		reason = reason[i+len(ErrRefused.Error())+2:]
	}
	if reason == "" || reason == ErrRefused.Error() {
		reason = "not allowed"
	}
	return clipRaw(reason, 300), true
}

// update edits the clicked message in the background.
func (h *Handler) update(c click, d contract.Decision, res contract.DecisionResult, attrs []any) {
	if h.notifier == nil || c.ref.Channel == "" || c.ref.TS == "" {
		return
	}
	o := Outcome{
		WorkflowID:  c.value.WorkflowID,
		ActionIndex: c.value.ActionIndex,
		Status:      res.Status,
		Kind:        d.Kind,
		By:          res.ApprovedBy,
		At:          res.DecidedAt,
		Summary:     c.blocks,
	}
	if d.Comment != "" {
		o.Detail = "Reason: " + d.Comment
	}
	if res.Status != StatusApproved && res.Status != StatusWaiting || len(o.By) == 0 {
		o.By = nil
		if res.DecidedBy != "" {
			o.By = []string{res.DecidedBy}
		} else {
			o.By = []string{d.Approver}
		}
	}
	if o.At.IsZero() && o.Final() {
		o.At = h.clock()
	}
	n := h.notifier
	h.enqueue(edit{what: "update", ref: c.ref, final: o.Final(), attrs: attrs,
		run: func(ctx context.Context) error { return n.Update(ctx, c.ref, o) }})
}

// tell shows the clicking user a short note, visible only to them.
func (h *Handler) tell(c click, text string, attrs []any) {
	if h.notifier == nil || c.ref.Channel == "" {
		return
	}
	n := h.notifier
	h.enqueue(edit{what: "ephemeral", attrs: attrs,
		run: func(ctx context.Context) error { return n.Ephemeral(ctx, c.ref.Channel, c.user, text) }})
}

// click is a verified, well-formed button click.
type click struct {
	user  string
	value ButtonValue
	kill  *KillButtonValue // set for the "Kill agent" button
	// promote is set for the "Promote" button of a promotion offer.
	promote *PromoteButtonValue
	ref     MessageRef
	blocks  []slack.Block
	// askReason is set for a "… with reason" button: open the modal.
	askReason bool
	triggerID string
	// submitted is set for a submitted reason modal, with the reason typed
	// (comment) or why it is not accepted (badReason).
	submitted bool
	comment   string
	badReason string
}

const errContentType = "content type must be application/x-www-form-urlencoded"

// parseClick reads Slack's form body (payload=<json>). It returns a short
// reason when the request is not one of our button clicks.
func parseClick(contentType string, body []byte) (click, string) {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/x-www-form-urlencoded" {
		return click{}, errContentType
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return click{}, "malformed form body"
	}
	if len(form["payload"]) != 1 || form.Get("payload") == "" {
		return click{}, "expected exactly one payload field"
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		return click{}, "malformed payload JSON"
	}
	if cb.Type == slack.InteractionTypeViewSubmission {
		return parseSubmission(cb)
	}
	if cb.Type != slack.InteractionTypeBlockActions {
		return click{}, "unsupported interaction type"
	}
	if len(cb.ActionCallback.BlockActions) != 1 {
		return click{}, "expected exactly one action"
	}
	a := cb.ActionCallback.BlockActions[0]
	var c click
	switch a.ActionID {
	case ActionKillAgent:
		kv, err := ParseKillButtonValue(a.Value)
		if err != nil {
			return click{}, "invalid button value"
		}
		c.kill = &kv
	case ActionPromote, ActionNotYet:
		pv, err := ParsePromoteButtonValue(a.Value)
		if err != nil {
			return click{}, "invalid button value"
		}
		pv.NotYet = a.ActionID == ActionNotYet
		c.promote = &pv
	case ActionDenyWithReason, ActionStopWithReason:
		v, err := ParseButtonValue(a.Value)
		if err != nil || v.Kind != reasonKinds[a.ActionID] {
			return click{}, "invalid button value"
		}
		if cb.TriggerID == "" {
			return click{}, "missing trigger_id"
		}
		c.value, c.askReason, c.triggerID = v, true, cb.TriggerID
	default:
		kind, known := actionKinds[a.ActionID]
		if !known {
			return click{}, "unknown action"
		}
		v, err := ParseButtonValue(a.Value)
		if err != nil || v.Kind != kind {
			return click{}, "invalid button value"
		}
		c.value = v
	}
	if cb.User.ID == "" {
		return click{}, "missing user"
	}
	c.user, c.blocks = cb.User.ID, cb.Message.Blocks.BlockSet
	c.ref.Channel = cb.Container.ChannelID
	if c.ref.Channel == "" {
		c.ref.Channel = cb.Channel.ID
	}
	c.ref.TS = cb.Container.MessageTs
	if c.ref.TS == "" {
		c.ref.TS = cb.Message.Timestamp
	}
	return c, ""
}

// parseSubmission reads a submitted reason modal: its private_metadata is
// checked exactly as a button's value (ParseReasonMetadata), so a
// submission decides no more than the button that opened the modal could.
func parseSubmission(cb slack.InteractionCallback) (click, string) {
	if cb.View.CallbackID != CallbackReason {
		return click{}, "unknown view"
	}
	m, err := ParseReasonMetadata(cb.View.PrivateMetadata)
	if err != nil {
		return click{}, "invalid view metadata"
	}
	if cb.User.ID == "" {
		return click{}, "missing user"
	}
	c := click{user: cb.User.ID, value: m.Value, ref: m.Ref, submitted: true}
	c.comment, c.badReason = reasonOf(cb.View.State)
	return c, ""
}
