package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlockhq/airlock/contract"
)

// statusHandler reads one of this agent's cycles. Another agent's cycles
// are not this server's to read.
func (s *Server) statusHandler(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var in struct {
		WorkflowID string `json:"workflow_id"`
	}
	if err := json.Unmarshal(req.Params.Arguments, &in); err != nil || strings.TrimSpace(in.WorkflowID) == "" {
		return refusal("workflow_id: required, e.g. \"cycle/" + s.agent.ID + "/mcp-…\" as an action tool returned it"), nil
	}
	id := in.WorkflowID
	if !strings.HasPrefix(id, "cycle/") && !strings.Contains(id, "/") {
		id = contract.CycleWorkflowID(s.agent.ID, id) // a bare cycle id
	}
	if agent, ok := contract.AgentOfCycle(id); !ok || agent != s.agent.ID {
		return refusal(fmt.Sprintf("workflow_id: %q is not a cycle of agent %s", in.WorkflowID, s.agent.ID)), nil
	}
	res, err := s.cfg.Cycles.Status(ctx, id)
	if err != nil {
		return refusal(fmt.Sprintf("Could not read cycle %s: %v", id, err)), nil
	}
	if res.Outcome == "" {
		// Still open: waiting for a human, or running.
		if p, err := s.cfg.Cycles.Pending(ctx, id); err == nil && len(p) > 0 {
			return s.pending(ctx, id), nil
		}
	}
	return s.answer(res, res.Outcome != ""), nil
}

// pendingHandler lists this agent's actions waiting for humans. Waiting
// cycles come from Temporal's visibility (a moment behind the cycles);
// each one's actions from the cycle itself.
func (s *Server) pendingHandler(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	waiting, err := s.cfg.Cycles.Waiting(ctx, 0)
	if err != nil {
		return refusal(fmt.Sprintf("Could not list waiting cycles: %v", err)), nil
	}
	out := struct {
		Pending []Waiting `json:"pending"`
		Message string    `json:"message"`
	}{Pending: []Waiting{}}
	var lines []string
	for _, w := range waiting {
		if w.AgentID != s.agent.ID {
			continue
		}
		p, err := s.cfg.Cycles.Pending(ctx, w.WorkflowID)
		if err != nil {
			continue // closed meanwhile
		}
		for _, a := range p {
			wa := waitingOf(a)
			out.Pending = append(out.Pending, wa)
			lines = append(lines, wa.WorkflowID+": "+wa.text())
		}
	}
	if len(lines) == 0 {
		out.Message = "Nothing of agent " + s.agent.ID + " waits for a human."
	} else {
		out.Message = fmt.Sprintf("%d action(s) of agent %s wait for a human:\n%s", len(lines), s.agent.ID, strings.Join(lines, "\n"))
	}
	js, _ := json.Marshal(out)
	return &mcp.CallToolResult{StructuredContent: out, Content: []mcp.Content{&mcp.TextContent{Text: out.Message}, &mcp.TextContent{Text: string(js)}}}, nil
}
