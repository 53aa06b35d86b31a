package policy

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const digest = "@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"

const testCatalog = `
actions:
  - name: read-thing
    image: busybox` + digest + `
    command: ["cat", "{{.path}}"]
    params_schema: {type: object, required: [path], properties: {path: {type: string}}, additionalProperties: false}
    class: read
    risk: low
    vault_policies: [ro]
  - name: scale
    image: busybox` + digest + `
    command: ["scale", "{{.replicas}}"]
    params_schema: {type: object, required: [replicas], properties: {replicas: {type: integer, maximum: 50}}}
    class: write
    risk: medium
    vault_policies: [rw]
    bounds: {replicas: {max: 10}}
    rollback: unscale
  - name: unscale
    image: busybox` + digest + `
    command: ["unscale"]
    params_schema: {type: object}
    class: write
    risk: medium
    vault_policies: [rw]
  - name: capped
    image: busybox` + digest + `
    command: ["x"]
    class: write
    risk: low
    vault_policies: [rw]
    max_phase: advisory
  - name: nuke
    image: busybox` + digest + `
    command: ["x"]
    class: write
    risk: critical
    vault_policies: [rw]
agents:
  - id: bot
    owner: team
    approvers: [U1, U2]
    namespace: agents-bot
    actions: [read-thing, scale, capped, nuke]
    phases: {read: autonomous, write: autonomous}
`

func mustCatalog(t *testing.T, src string) *Catalog {
	t.Helper()
	c, err := Parse("test.yaml", []byte(src))
	require.NoError(t, err)
	return c
}

func TestParseReportsEveryProblemWithItsLocation(t *testing.T) {
	bad := `
actions:
  - name: Bad_Name
    image: busybox:latest
    command: []
    class: execute
    risk: extreme
    egress: [{cidr: "10.0.0.0/33", port: 0}]
    rollback: missing
agents:
  - id: bot
    owner: ""
    namespace: agents-bot
    actions: [nope]
    phases: {read: trusted}
`
	_, err := Parse("bad.yaml", []byte(bad))
	require.Error(t, err)
	var probs *Problems
	require.ErrorAs(t, err, &probs)
	want := []string{
		"actions[0] (Bad_Name).name: must be a lowercase DNS label",
		"actions[0] (Bad_Name).image: must be pinned by digest",
		"actions[0] (Bad_Name).command: required",
		"actions[0] (Bad_Name).class: must be read or write",
		"actions[0] (Bad_Name).risk: must be low, medium, high or critical",
		"actions[0] (Bad_Name).vault_policies: at least one Vault policy is required",
		"actions[0] (Bad_Name).egress[0].cidr:",
		"actions[0] (Bad_Name).egress[0].port: must be 1-65535",
		"actions[0] (Bad_Name).rollback: unknown action type \"missing\"",
		"agents[0] (bot).owner: required",
		"agents[0] (bot).actions[0]: unknown action type \"nope\"",
		"agents[0] (bot).phases.read: unknown phase \"trusted\"",
		"agents[0] (bot).phases.write: required",
	}
	msg := err.Error()
	for _, w := range want {
		assert.Contains(t, msg, w)
	}
	assert.Contains(t, msg, "bad.yaml")
	assert.Len(t, probs.Items, len(want))
}

func TestParseRefusesUnknownFields(t *testing.T) {
	_, err := Parse("x.yaml", []byte("actions: []\nagents: []\nagnets: []\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown field "agnets"`)
}

func TestShippedCatalogLoads(t *testing.T) {
	c, err := LoadFile("../deploy/catalog.yaml")
	require.NoError(t, err)
	_, ok := c.Agent("sample")
	assert.True(t, ok)
}

func TestPlanNamesTheFieldOfEveryProblem(t *testing.T) {
	c := mustCatalog(t, testCatalog)
	tests := map[string]struct {
		agent   string
		actions []Proposal
		want    []string
	}{
		"unknown agent": {
			agent: "ghost", actions: []Proposal{{Type: "scale"}},
			want: []string{`agent_id: unknown agent "ghost"`},
		},
		"no actions": {
			agent: "bot", want: []string{"actions: at least one action is required"},
		},
		"unknown action type": {
			agent: "bot", actions: []Proposal{{Type: "read-thing", Params: map[string]any{"path": "/x"}}, {Type: "rm-rf"}},
			want: []string{`actions[1].type: unknown action type "rm-rf"`},
		},
		"action not allowed for agent": {
			agent: "bot", actions: []Proposal{{Type: "unscale"}},
			want: []string{`actions[0].type: agent "bot" may not use action type "unscale"`},
		},
		"missing required param": {
			agent: "bot", actions: []Proposal{{Type: "scale", Params: map[string]any{}}},
			want: []string{"actions[0].params: missing property 'replicas'"},
		},
		"param over schema maximum": {
			agent: "bot", actions: []Proposal{{Type: "scale", Params: map[string]any{"replicas": 51}}},
			want: []string{"actions[0].params.replicas: maximum: got 51, want 50"},
		},
		"param of wrong type and unknown param": {
			agent: "bot", actions: []Proposal{{Type: "read-thing", Params: map[string]any{"path": 3, "extra": true}}},
			want: []string{"actions[0].params.path: got number, want string", "actions[0].params: additional properties 'extra' not allowed"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := c.Plan(tc.agent, tc.actions)
			require.Error(t, err)
			var rerr *RequestError
			require.ErrorAs(t, err, &rerr)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Len(t, rerr.Problems, len(tc.want), err.Error())
		})
	}
}

func TestPlanRendersCommandAndBindsHash(t *testing.T) {
	c := mustCatalog(t, testCatalog)
	p, err := c.Plan("bot", []Proposal{{Type: "scale", Params: map[string]any{"replicas": 3}}})
	require.NoError(t, err)
	require.Len(t, p.Actions, 1)
	a := p.Actions[0]
	assert.Equal(t, []string{"scale", "3"}, a.Command)
	assert.Equal(t, "agents-bot", p.Namespace)
	assert.True(t, a.VerifyHash())
	require.NotNil(t, a.Rollback)
	assert.Equal(t, "unscale", a.Rollback.Type)

	// Any change to what would run breaks the hash an approval was bound to.
	a.Command = []string{"scale", "30"}
	assert.False(t, a.VerifyHash())

	// Same proposal, same hash: approvals survive a replay.
	p2, err := c.Plan("bot", []Proposal{{Type: "scale", Params: map[string]any{"replicas": 3}}})
	require.NoError(t, err)
	assert.Equal(t, p.Actions[0].Hash, p2.Actions[0].Hash)
}

func TestDecide(t *testing.T) {
	c := mustCatalog(t, testCatalog)
	act := func(n string) *ActionType { a, _ := c.Action(n); return a }
	agent := func(read, write Phase) *Agent {
		return &Agent{ID: "bot", Phases: map[Class]Phase{ClassRead: read, ClassWrite: write}}
	}
	small := map[string]any{"replicas": float64(3)}
	big := map[string]any{"replicas": float64(30)}
	tests := map[string]struct {
		agent     *Agent
		action    string
		params    map[string]any
		mode      Mode
		phase     Phase
		approvals int
	}{
		"shadow read runs":                 {agent(PhaseShadow, PhaseShadow), "read-thing", nil, ModeRun, PhaseShadow, 0},
		"shadow write is would-do":         {agent(PhaseShadow, PhaseShadow), "scale", small, ModeWouldDo, PhaseShadow, 0},
		"advisory write needs approval":    {agent(PhaseAutonomous, PhaseAdvisory), "scale", small, ModeApprove, PhaseAdvisory, 1},
		"supervised in bounds is veto":     {agent(PhaseAutonomous, PhaseSupervised), "scale", small, ModeVeto, PhaseSupervised, 0},
		"supervised out of bounds":         {agent(PhaseAutonomous, PhaseSupervised), "scale", big, ModeApprove, PhaseSupervised, 1},
		"supervised missing bounded param": {agent(PhaseAutonomous, PhaseSupervised), "scale", nil, ModeApprove, PhaseSupervised, 1},
		"autonomous write runs":            {agent(PhaseAutonomous, PhaseAutonomous), "scale", big, ModeRun, PhaseAutonomous, 0},
		"max_phase caps autonomous":        {agent(PhaseAutonomous, PhaseAutonomous), "capped", nil, ModeApprove, PhaseAdvisory, 1},
		"critical needs two approvers":     {agent(PhaseAutonomous, PhaseAutonomous), "nuke", nil, ModeApprove, PhaseAutonomous, 2},
		"critical in shadow never runs":    {agent(PhaseShadow, PhaseShadow), "nuke", nil, ModeWouldDo, PhaseShadow, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := Decide(tc.agent, act(tc.action), tc.params)
			assert.Equal(t, tc.mode, d.Mode)
			assert.Equal(t, tc.phase, d.Phase)
			assert.Equal(t, tc.approvals, d.Approvals)
			assert.NotEmpty(t, d.Rule)
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile(os.DevNull + "/nope.yaml")
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "read catalog:"))
}

func TestReminderAndEscalationMustFitTheApprovalTimeout(t *testing.T) {
	bad := strings.Replace(testCatalog, "    phases: {read: autonomous, write: autonomous}\n",
		"    phases: {read: autonomous, write: autonomous}\n    approval_timeout: 10m\n    reminder_after: 10m\n    escalate_after: 5m\n", 1)
	_, err := Parse("t.yaml", []byte(bad))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "agents[0] (bot).reminder_after: must be shorter than approval_timeout (10m0s)")
	assert.Contains(t, err.Error(), "agents[0] (bot).escalation_channel: required with escalate_after")
}

func TestAgentQuotaIsValidated(t *testing.T) {
	base := `
actions:
  - name: a
    image: docker.io/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7
    command: ["true"]
    class: read
    risk: low
    vault_policies: [p]
agents:
  - id: x
    owner: o
    namespace: ns-x
    actions: [a]
    phases: {read: autonomous, write: shadow}
`
	cat, err := Parse("ok", []byte(base+"    quota: {pods: 50, cpu: \"8\", memory: 4Gi}\n"))
	require.NoError(t, err)
	ag, _ := cat.Agent("x")
	assert.Equal(t, AgentQuota{Pods: 50, CPU: "8", Memory: "4Gi"}, ag.Quota)

	_, err = Parse("bad", []byte(base+"    quota: {pods: -1, cpu: lots}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "quota.pods: must not be negative")
	assert.Contains(t, err.Error(), `quota.cpu: "lots" is not a Kubernetes quantity`)
}

func TestPlanOnlyDryRuns(t *testing.T) {
	act := func(m Mode) RenderedAction { return RenderedAction{Decision: Decision{Mode: m}} }
	assert.True(t, Plan{Actions: []RenderedAction{act(ModeWouldDo), act(ModeWouldDo)}}.OnlyDryRuns())
	assert.False(t, Plan{Actions: []RenderedAction{act(ModeWouldDo), act(ModeRun)}}.OnlyDryRuns(), "a read runs")
	assert.False(t, Plan{Actions: []RenderedAction{act(ModeApprove)}}.OnlyDryRuns(), "a write waits")
	assert.False(t, Plan{Actions: []RenderedAction{act(ModeVeto)}}.OnlyDryRuns())
	assert.False(t, Plan{}.OnlyDryRuns(), "an empty plan")
}
