package mcpserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

// Statuses of a Result besides the cycle's outcomes.
const (
	StatusPending = "pending" // a human has not decided yet: poll airlock_cycle_status
	StatusRunning = "running" // approved or not gated, still running
)

// Result is the structured content of an action tool's answer and of
// airlock_cycle_status.
type Result struct {
	// Status is the action's outcome (succeeded, failed, denied, would_do,
	// skipped) or pending / running while the cycle is open.
	Status     string `json:"status"`
	WorkflowID string `json:"workflow_id"`
	UIURL      string `json:"ui_url,omitempty"`
	Action     string `json:"action,omitempty"`
	// Mode is what the policy decided (run, approve, veto, would_do) and
	// Rule why; Phase is the agent's phase for the action's class.
	Mode  policy.Mode  `json:"mode,omitempty"`
	Phase policy.Phase `json:"phase,omitempty"`
	Rule  string       `json:"rule,omitempty"`
	// ExitCode and Output are the Job's, when it ran.
	ExitCode *int32 `json:"exit_code,omitempty"`
	Output   string `json:"output,omitempty"`
	Error    string `json:"error,omitempty"`
	// DryRun is, in shadow, whether the cluster would admit the Job.
	DryRun string `json:"dry_run,omitempty"`
	// Budget names the agent's budget that refused the action.
	Budget string `json:"budget,omitempty"`
	// Decisions are the humans' decisions on the action: who, what, via,
	// when and their comment.
	Decisions []contract.DecisionRecord `json:"decisions,omitempty"`
	// Rollback is the outcome of the rollback a failed write ran.
	Rollback string `json:"rollback,omitempty"`
	// Waiting says who must decide, and by when, while status is pending.
	Waiting *Waiting `json:"waiting,omitempty"`
	// Actions are the per-action results of a cycle with several actions
	// (airlock_cycle_status on a cycle not started here).
	Actions []Result `json:"actions,omitempty"`
	// Message says it all in a sentence, for the model.
	Message string `json:"message"`
}

// Waiting is an action waiting for humans.
type Waiting struct {
	WorkflowID string      `json:"workflow_id"`
	Action     string      `json:"action"`
	Index      int         `json:"index"`
	Mode       policy.Mode `json:"mode"`
	Risk       policy.Risk `json:"risk"`
	Approvers  []string    `json:"approvers"`
	Needed     int         `json:"needed"`
	ApprovedBy []string    `json:"approved_by,omitempty"`
	Deadline   time.Time   `json:"deadline"`
	Rule       string      `json:"rule,omitempty"`
}

func waitingOf(p contract.PendingAction) Waiting {
	return Waiting{WorkflowID: p.WorkflowID, Action: p.Action.Type, Index: p.Action.Index, Mode: p.Action.Decision.Mode,
		Risk: p.Action.Risk, Approvers: p.Approvers, Needed: p.Needed, ApprovedBy: p.ApprovedBy, Deadline: p.Deadline, Rule: p.Action.Decision.Rule}
}

func (w Waiting) text() string {
	if w.Mode == policy.ModeVeto {
		return fmt.Sprintf("%s runs at %s unless one of %s stops it", w.Action, w.Deadline.UTC().Format(time.RFC3339), strings.Join(w.Approvers, ", "))
	}
	return fmt.Sprintf("%s waits for %d approval(s) from %s (%d so far) until %s; no decision by then is a denial",
		w.Action, w.Needed, strings.Join(w.Approvers, ", "), len(w.ApprovedBy), w.Deadline.UTC().Format(time.RFC3339))
}

// actionHandler proposes a one-action cycle of type a and answers with its
// result, "pending" past the configured wait.
func (s *Server) actionHandler(a *policy.ActionType) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		creq, err := s.cycleRequest(a, req.Params.Arguments)
		if err == nil {
			err = s.cfg.Cycles.Validate(creq)
		}
		if err != nil {
			return refusal(invalidText(a.Name, err)), nil
		}
		run, err := s.cfg.Cycles.Start(s.callTrace(ctx, req.Params.GetMeta(), a.Name), creq)
		if err != nil {
			s.logger.Warn("propose cycle", "action", a.Name, "err", err)
			return refusal(fmt.Sprintf("Airlock could not propose %s: %v", a.Name, err)), nil
		}
		s.logger.Info("proposed", "action", a.Name, "workflow_id", run.WorkflowID)
		return s.await(ctx, req, run)
	}
}

// cycleRequest splits the tool's arguments into the action's params and
// the cycle's rationale and thoughts. Params are validated by the catalog
// (policy), as the workflow validates them again.
func (s *Server) cycleRequest(a *policy.ActionType, raw json.RawMessage) (contract.CycleRequest, error) {
	args := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &args); err != nil || args == nil {
			return contract.CycleRequest{}, errors.New("arguments: must be a JSON object")
		}
	}
	rationale, ok := args[ArgRationale].(string)
	if !ok || strings.TrimSpace(rationale) == "" {
		return contract.CycleRequest{}, fmt.Errorf("%s: required: say why you propose this action", ArgRationale)
	}
	delete(args, ArgRationale)
	var thoughts []contract.Thought
	if t, ok := args[ArgThoughts]; ok {
		b, _ := json.Marshal(t)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var in []struct {
			Content    string   `json:"content"`
			Confidence *float64 `json:"confidence"`
		}
		if err := dec.Decode(&in); err != nil {
			return contract.CycleRequest{}, fmt.Errorf("%s: must be an array of {content, confidence 0..1}: %v", ArgThoughts, err)
		}
		for i, th := range in {
			if th.Confidence == nil {
				return contract.CycleRequest{}, fmt.Errorf("%s[%d].confidence: required (0..1)", ArgThoughts, i)
			}
			thoughts = append(thoughts, contract.Thought{Step: i + 1, Content: th.Content, Confidence: *th.Confidence})
		}
		delete(args, ArgThoughts)
	}
	return contract.CycleRequest{
		AgentID: s.agent.ID, CycleID: s.cycleID(), Principal: "agent:" + s.agent.ID, Thoughts: thoughts,
		Actions: []policy.Proposal{{Type: a.Name, Params: args, Rationale: rationale}},
	}, nil
}

// cycleID is unique per call: a retried tool call is a new proposal.
func (s *Server) cycleID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "mcp-" + s.now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// invalidText names the argument each problem concerns, in the tool's own
// terms (the catalog says "actions[0].params.replicas", the model sent
// "replicas").
func invalidText(action string, err error) string {
	var rerr *policy.RequestError
	if !errors.As(err, &rerr) {
		return fmt.Sprintf("Invalid arguments for %s, nothing was proposed: %v", action, err)
	}
	parts := make([]string, len(rerr.Problems))
	for i, p := range rerr.Problems {
		parts[i] = argName(p.Field) + ": " + p.Msg
	}
	return fmt.Sprintf("Invalid arguments for %s, nothing was proposed: %s", action, strings.Join(parts, "; "))
}

func argName(field string) string {
	const params = "actions[0].params"
	switch {
	case strings.HasPrefix(field, params+"."):
		return strings.TrimPrefix(field, params+".")
	case field == params:
		return "arguments"
	case strings.HasPrefix(field, "actions[0]."):
		return strings.TrimPrefix(field, "actions[0].")
	}
	return field
}

// await waits up to the configured wait for the cycle's result, telling a
// client that sent a progress token where it stands meanwhile.
func (s *Server) await(ctx context.Context, req *mcp.CallToolRequest, run *starter.Run) (*mcp.CallToolResult, error) {
	// The wait is a timer, not a deadline on Get: the SDK's long poll
	// may end just before a deadline with an error of its own.
	getCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	timeout := time.NewTimer(s.cfg.Wait)
	defer timeout.Stop()
	type got struct {
		res contract.CycleResult
		err error
	}
	done := make(chan got, 1)
	go func() {
		res, err := run.Get(getCtx)
		done <- got{res, err}
	}()
	token := req.Params.GetProgressToken()
	var progress float64
	notify := func(msg string) {
		if token == nil || req.Session == nil {
			return
		}
		progress++
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: progress, Message: msg}); err != nil {
			s.logger.Debug("progress notification", "err", err)
		}
	}
	notify("proposed as cycle " + run.WorkflowID)
	tick := time.NewTicker(s.cfg.ProgressInterval)
	defer tick.Stop()
	for {
		select {
		case g := <-done:
			if g.err == nil {
				return s.answer(g.res, true), nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err() // the client gave up; the cycle goes on
			}
			return s.failed(run.WorkflowID, g.err), nil
		case <-timeout.C:
			return s.pending(ctx, run.WorkflowID), nil
		case <-tick.C:
			if token == nil {
				continue
			}
			p, err := s.cfg.Cycles.Pending(ctx, run.WorkflowID)
			if err != nil || len(p) == 0 {
				notify("cycle " + run.WorkflowID + " is running")
				continue
			}
			notify("cycle " + run.WorkflowID + ": " + waitingOf(p[0]).text())
		}
	}
}

// pending is the answer past the wait: not an error, and nothing ran.
func (s *Server) pending(ctx context.Context, workflowID string) *mcp.CallToolResult {
	r := Result{Status: StatusRunning, WorkflowID: workflowID, UIURL: s.uiURL(workflowID)}
	p, err := s.cfg.Cycles.Pending(ctx, workflowID)
	if err == nil && len(p) > 0 {
		w := waitingOf(p[0])
		r.Status, r.Waiting, r.Action, r.Mode, r.Rule = StatusPending, &w, w.Action, w.Mode, w.Rule
		r.Message = fmt.Sprintf("Not run yet: %s. Call %s with workflow_id %q later to get the result.", w.text(), ToolCycleStatus, workflowID)
	} else {
		r.Message = fmt.Sprintf("Cycle %s has not finished within %s. Call %s with workflow_id %q later to get the result.", workflowID, s.cfg.Wait, ToolCycleStatus, workflowID)
	}
	return result(r, false)
}

// failed is a cycle whose result could not be had: refused by the
// workflow (an invalid request or action, an unverified signature) — then
// nothing ran — or anything else, when Airlock cannot say what happened.
func (s *Server) failed(workflowID string, err error) *mcp.CallToolResult {
	r := Result{Status: string(contract.OutcomeFailed), WorkflowID: workflowID, UIURL: s.uiURL(workflowID), Error: err.Error()}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && (appErr.Type() == contract.ErrTypeInvalidRequest || appErr.Type() == contract.ErrTypeInvalidAction) {
		r.Error = appErr.Message()
		r.Message = fmt.Sprintf("Airlock refused cycle %s, nothing ran: %s", workflowID, r.Error)
	} else {
		r.Status = "unknown"
		r.Message = fmt.Sprintf("Could not get the result of cycle %s (%v): it may still run. Call %s with workflow_id %q to find out.", workflowID, err, ToolCycleStatus, workflowID)
	}
	return result(r, true)
}

// answer maps a cycle's result (final or so far). A denial, a refusal and
// a failure are tool errors whose text says why, so the model can re-plan.
func (s *Server) answer(res contract.CycleResult, final bool) *mcp.CallToolResult {
	r := s.resultOf(res)
	isErr := false
	for _, a := range append([]Result{r}, r.Actions...) {
		switch contract.Outcome(a.Status) {
		case contract.OutcomeDenied, contract.OutcomeFailed:
			isErr = true
		}
	}
	return result(r, isErr)
}

func (s *Server) resultOf(res contract.CycleResult) Result {
	if len(res.Actions) == 1 {
		r := s.actionResult(res.WorkflowID, res.Actions[0])
		if res.Outcome == "" && r.Status == "" {
			r.Status, r.Message = StatusRunning, fmt.Sprintf("Cycle %s is running %s.", res.WorkflowID, r.Action)
		}
		return r
	}
	r := Result{Status: string(res.Outcome), WorkflowID: res.WorkflowID, UIURL: s.uiURL(res.WorkflowID)}
	if r.Status == "" {
		r.Status = StatusRunning
	}
	var msgs []string
	for _, a := range res.Actions {
		ar := s.actionResult(res.WorkflowID, a)
		r.Actions = append(r.Actions, ar)
		if ar.Message != "" {
			msgs = append(msgs, fmt.Sprintf("[%d] %s", a.Index, ar.Message))
		}
	}
	r.Message = fmt.Sprintf("Cycle %s: %s. %s", res.WorkflowID, r.Status, strings.Join(msgs, " "))
	return r
}

func (s *Server) actionResult(workflowID string, a contract.ActionResult) Result {
	r := Result{Status: string(a.Outcome), WorkflowID: workflowID, UIURL: s.uiURL(workflowID), Action: a.Type,
		Mode: a.Decision.Mode, Phase: a.Decision.Phase, Rule: a.Decision.Rule, Output: a.Output, Error: a.Error,
		DryRun: a.DryRun, Budget: a.Budget, Decisions: a.Decisions}
	if a.Job != nil && (a.Outcome == contract.OutcomeSucceeded || a.Outcome == contract.OutcomeFailed) {
		r.ExitCode = new(a.ExitCode)
	}
	if a.Rollback != nil {
		r.Rollback = string(a.Rollback.Outcome)
	}
	by := decidedBy(a.Decisions)
	switch a.Outcome {
	case contract.OutcomeSucceeded:
		r.Message = fmt.Sprintf("%s ran and succeeded (exit code %d)%s.", a.Type, a.ExitCode, by)
	case contract.OutcomeFailed:
		r.Message = fmt.Sprintf("%s ran and failed (exit code %d): %s%s.", a.Type, a.ExitCode, firstOf(a.Error, a.Output), by)
		if a.Rollback != nil {
			r.Message += fmt.Sprintf(" Its rollback %s: %s.", a.Rollback.Type, a.Rollback.Outcome)
		}
	case contract.OutcomeDenied:
		switch {
		case a.Budget != "":
			r.Message = fmt.Sprintf("%s was refused by the agent's %s budget, nothing ran: %s.", a.Type, a.Budget, firstOf(a.Error, a.Reason))
		case len(a.Decisions) > 0:
			r.Message = fmt.Sprintf("%s was denied, nothing ran: %s%s.", a.Type, firstOf(a.Error, a.Reason), comments(a.Decisions))
		default:
			r.Message = fmt.Sprintf("%s was refused, nothing ran: %s.", a.Type, firstOf(a.Error, a.Reason, a.Decision.Rule))
		}
	case contract.OutcomeWouldDo:
		r.Message = fmt.Sprintf("%s did not run: the agent is in the shadow phase for this class, so Airlock only recorded what it would do (dry-run: %s).", a.Type, firstOf(a.DryRun, "not checked"))
	case contract.OutcomeSkipped:
		r.Message = fmt.Sprintf("%s was skipped: an earlier action of the cycle failed or was denied.", a.Type)
	}
	return r
}

// decidedBy says who let the action run.
func decidedBy(ds []contract.DecisionRecord) string {
	var who []string
	for _, d := range ds {
		if d.Kind == contract.DecisionApprove {
			who = append(who, d.Approver)
		}
	}
	if len(who) == 0 {
		return ""
	}
	return ", approved by " + strings.Join(who, ", ") + comments(ds)
}

// comments quotes what the deciding humans wrote.
func comments(ds []contract.DecisionRecord) string {
	var out []string
	for _, d := range ds {
		if d.Comment != "" {
			out = append(out, fmt.Sprintf("%s (%s) said: %q", d.Approver, d.Kind, d.Comment))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "; " + strings.Join(out, "; ")
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// result wraps a Result: the message first (what a model reads), then the
// same as JSON for clients that ignore structured content.
func result(r Result, isErr bool) *mcp.CallToolResult {
	js, _ := json.Marshal(r)
	return &mcp.CallToolResult{
		IsError:           isErr,
		StructuredContent: r,
		Content:           []mcp.Content{&mcp.TextContent{Text: r.Message}, &mcp.TextContent{Text: string(js)}},
	}
}

// refusal is a tool error before any cycle exists.
func refusal(msg string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}
}
