package starter

import (
	"context"
	"fmt"
	"slices"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// WaitingCycle is a running cycle with an action waiting for a human, as
// Temporal's visibility lists it: no query reaches the cycle itself, so
// listing costs the same whether ten or ten thousand cycles wait.
type WaitingCycle struct {
	WorkflowID string      `json:"workflow_id"`
	AgentID    string      `json:"agent_id"`
	Risk       policy.Risk `json:"risk"`
	Phase      string      `json:"phase"`
	Started    time.Time   `json:"started"`
}

// waitingQuery selects cycles whose AirlockOutcome is "waiting" (set while
// a gate is open, by cycles started since that attribute was introduced).
var waitingQuery = fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND AirlockOutcome = 'waiting'", contract.CycleWorkflowName)

// Waiting lists every waiting cycle, page by page (pageSize per request;
// 0 means 1000), highest risk first, then oldest first.
func (c *Client) Waiting(ctx context.Context, pageSize int) ([]WaitingCycle, error) {
	if pageSize <= 0 {
		pageSize = 1000
	}
	var out []WaitingCycle
	var token []byte
	for {
		resp, err := c.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: waitingQuery, PageSize: int32(pageSize), NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("list waiting cycles: %w", err)
		}
		for _, e := range resp.Executions {
			fields := e.GetSearchAttributes().GetIndexedFields()
			out = append(out, WaitingCycle{
				WorkflowID: e.GetExecution().GetWorkflowId(),
				AgentID:    keyword(fields["AirlockAgent"]),
				Risk:       policy.Risk(keyword(fields["AirlockRisk"])),
				Phase:      keyword(fields["AirlockPhase"]),
				Started:    e.GetStartTime().AsTime(),
			})
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b WaitingCycle) int {
		return policy.CompareUrgency(a.Risk, a.Started, b.Risk, b.Started)
	})
	return out, nil
}

// keyword decodes a Keyword search attribute (plain JSON, never encrypted).
func keyword(p *commonpb.Payload) string {
	var s string
	if p != nil {
		_ = converter.GetDefaultDataConverter().FromPayload(p, &s)
	}
	return s
}
