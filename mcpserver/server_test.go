package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const img = "docker.io/library/busybox@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"

var testCatalog = `
actions:
  - name: inspect
    description: Read a service's status.
    image: ` + img + `
    command: ["echo", "{{.service}}"]
    params_schema: {type: object, required: [service], properties: {service: {type: string, maxLength: 20}}, additionalProperties: false}
    class: read
    risk: low
    vault_policies: [p]
  - name: scale
    image: ` + img + `
    command: ["scale", "{{.replicas}}"]
    params_schema: {type: object, required: [deployment, replicas], properties: {deployment: {type: string}, replicas: {type: integer, minimum: 1}}, additionalProperties: false}
    class: write
    risk: medium
    vault_policies: [p]
    rollback: unscale
    bounds: {replicas: {max: 10}}
  - name: unscale
    image: ` + img + `
    command: ["true"]
    params_schema: {type: object}
    class: write
    risk: low
    vault_policies: [p]
  - name: restart
    image: ` + img + `
    command: ["true"]
    class: write
    risk: low
    max_phase: advisory
    vault_policies: [p]
  - name: drop-db
    image: ` + img + `
    command: ["true"]
    class: write
    risk: critical
    vault_policies: [p]
agents:
  - id: bot
    owner: tests
    approvers: [U1, U2]
    namespace: bot
    actions: [inspect, scale, restart, drop-db]
    phases: {read: autonomous, write: autonomous}
    approval_timeout: 10m
    veto_window: 30s
  - id: other
    owner: tests
    namespace: other
    actions: [unscale]
    phases: {read: shadow, write: shadow}
    trust: {start: shadow}
`

// agentStates answers the agent state query as the Agent workflow would;
// everything else goes to a real starter.Client that has no Temporal
// behind it, so anything past validation fails the test.
type agentStates struct {
	*starter.Client
	mu     sync.Mutex
	state  contract.AgentState
	err    error
	starts int
}

func (a *agentStates) AgentState(context.Context, string) (contract.AgentState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state, a.err
}

func (a *agentStates) set(st contract.AgentState, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state, a.err = st, err
}

func (a *agentStates) Start(context.Context, contract.CycleRequest) (*starter.Run, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.starts++
	return nil, errors.New("no Temporal in unit tests")
}

func loadCatalog(t *testing.T) *policy.Catalog {
	t.Helper()
	cat, err := policy.Parse("test", []byte(testCatalog))
	require.NoError(t, err)
	return cat
}

// connect serves agent's tools to a real MCP client over in-memory
// transports.
func connect(t *testing.T, agent string) (*mcp.ClientSession, *agentStates) {
	t.Helper()
	cat := loadCatalog(t)
	cycles := &agentStates{Client: starter.New(nil, starter.WithCatalog(cat)), err: starter.ErrNoAgentState}
	srv, err := New(Config{AgentID: agent, Catalog: cat, Cycles: cycles, UIBaseURL: "http://ui.example:8233"})
	require.NoError(t, err)
	st, ct := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	ss, err := srv.MCP().Connect(ctx, st, nil)
	require.NoError(t, err)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil).Connect(ctx, ct, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
		cancel()
	})
	return cs, cycles
}

func listTools(t *testing.T, cs *mcp.ClientSession) map[string]*mcp.Tool {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	out := map[string]*mcp.Tool{}
	for _, tl := range res.Tools {
		out[tl.Name] = tl
	}
	return out
}

func TestToolsAreTheAgentsActionTypesWithTheCatalogsSchemas(t *testing.T) {
	cs, _ := connect(t, "bot")
	tools := listTools(t, cs)
	assert.ElementsMatch(t, []string{"inspect", "scale", "restart", "drop-db", ToolCycleStatus, ToolPending}, keys(tools),
		"one tool per action type the agent may propose (not unscale, which it may not), and the two read-only tools")

	cat := loadCatalog(t)
	for _, name := range []string{"inspect", "scale", "restart", "drop-db"} {
		t.Run(name, func(t *testing.T) {
			a, _ := cat.Action(name)
			schema, ok := tools[name].InputSchema.(map[string]any)
			require.True(t, ok)
			props := schema["properties"].(map[string]any)
			assert.Equal(t, "string", props[ArgRationale].(map[string]any)["type"])
			assert.Equal(t, "array", props[ArgThoughts].(map[string]any)["type"])
			assert.Contains(t, schema["required"], ArgRationale, "rationale is required")
			assert.NotContains(t, schema["required"], ArgThoughts, "thoughts are optional")

			// Without rationale and thoughts it is the catalog's params_schema.
			delete(props, ArgRationale)
			delete(props, ArgThoughts)
			req := schema["required"].([]any)
			schema["required"] = req[:len(req)-1]
			want := map[string]any{"type": "object", "additionalProperties": false}
			if len(a.ParamsSchema) > 0 {
				require.NoError(t, json.Unmarshal(a.ParamsSchema, &want))
			}
			if _, ok := want["properties"]; !ok && len(props) == 0 {
				delete(schema, "properties")
			}
			if _, ok := want["required"]; !ok && len(schema["required"].([]any)) == 0 {
				delete(schema, "required")
			}
			if diff := cmp.Diff(want, schema); diff != "" {
				t.Errorf("input schema minus rationale/thoughts differs from params_schema (-want +got):\n%s", diff)
			}

			ann := tools[name].Annotations
			require.NotNil(t, ann)
			read := a.Class == policy.ClassRead
			assert.Equal(t, read, ann.ReadOnlyHint)
			require.NotNil(t, ann.DestructiveHint)
			assert.Equal(t, !read, *ann.DestructiveHint)
		})
	}
	assert.True(t, tools[ToolCycleStatus].Annotations.ReadOnlyHint)
	assert.True(t, tools[ToolPending].Annotations.ReadOnlyHint)
}

func TestDescriptionsSayWhatTheAgentsCurrentPhaseMeans(t *testing.T) {
	cs, states := connect(t, "bot")
	active := func(read, write policy.Phase) contract.AgentState {
		return contract.AgentState{AgentID: "bot", Status: contract.AgentActive, Phases: map[policy.Class]policy.Phase{policy.ClassRead: read, policy.ClassWrite: write}}
	}
	for _, tc := range []struct {
		name  string
		state contract.AgentState
		err   error
		want  map[string][]string // tool -> substrings of its description
	}{
		{"no live state yet: the catalog's phases", contract.AgentState{}, starter.ErrNoAgentState, map[string][]string{
			"inspect": {"Read a service's status.", "class read", "risk low", "autonomous phase for read actions: runs now"},
			"scale":   {"class write", "risk medium", "autonomous phase for write actions: runs now; if it fails Airlock runs unscale"},
			"restart": {"advisory phase for write actions (capped by the action's max_phase): waits for a human", "no decision within 10m0s is a denial"},
			"drop-db": {"risk critical", "waits for a human — it runs only after 2 distinct human approvals"},
		}},
		{"demoted to shadow", active(policy.PhaseShadow, policy.PhaseShadow), nil, map[string][]string{
			"inspect": {"shadow phase for read actions: runs now"},
			"scale":   {"shadow phase for write actions: dry-run only"},
			"drop-db": {"dry-run only"},
		}},
		{"advisory writes", active(policy.PhaseAutonomous, policy.PhaseAdvisory), nil, map[string][]string{
			"scale": {"advisory phase for write actions: waits for a human — it runs only after a human approval"},
		}},
		{"supervised writes", active(policy.PhaseAutonomous, policy.PhaseSupervised), nil, map[string][]string{
			"scale": {"supervised phase", "runs after a 30s veto window unless a human stops it; outside its bounds (replicas ≤ 10) it waits for a human"},
		}},
		{"killed", contract.AgentState{Status: contract.AgentKilled, Why: "rogue"}, nil, map[string][]string{
			"inspect": {"bot is killed (rogue): every call is refused"},
		}},
		{"Airlock unreachable", contract.AgentState{}, errors.New("connection refused"), map[string][]string{
			"scale": {"could not be read", "a write may wait for a human"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			states.set(tc.state, tc.err)
			tools := listTools(t, cs) // listing again reads the phase again
			for name, subs := range tc.want {
				for _, s := range subs {
					assert.Contains(t, tools[name].Description, s, name)
				}
			}
		})
	}
}

func TestInvalidArgumentsAreToolErrorsNamingTheField(t *testing.T) {
	cs, cycles := connect(t, "bot")
	for _, tc := range []struct {
		name string
		tool string
		args map[string]any
		want string
	}{
		{"no rationale", "inspect", map[string]any{"service": "checkout"}, "rationale: required"},
		{"missing param", "scale", map[string]any{"deployment": "web", "rationale": "r"}, "missing property 'replicas'"},
		{"wrong type", "scale", map[string]any{"deployment": "web", "replicas": "five", "rationale": "r"}, "replicas: got string, want integer"},
		{"out of range", "scale", map[string]any{"deployment": "web", "replicas": 0, "rationale": "r"}, "replicas: minimum"},
		{"unknown param", "inspect", map[string]any{"service": "checkout", "force": true, "rationale": "r"}, "additional properties 'force' not allowed"},
		{"too long", "inspect", map[string]any{"service": "a-very-long-service-name", "rationale": "r"}, "service: maxLength"},
		{"bad confidence", "inspect", map[string]any{"service": "checkout", "rationale": "r", "thoughts": []any{map[string]any{"content": "hm", "confidence": 2}}}, "thoughts[0].confidence: must be between 0 and 1"},
		{"thoughts not objects", "inspect", map[string]any{"service": "checkout", "rationale": "r", "thoughts": "hm"}, "thoughts: must be an array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
			require.NoError(t, err, "a refusal is a tool error, not a protocol error")
			assert.True(t, res.IsError)
			text := res.Content[0].(*mcp.TextContent).Text
			assert.Contains(t, text, "Invalid arguments for "+tc.tool+", nothing was proposed")
			assert.Contains(t, text, tc.want)
		})
	}
	assert.Zero(t, cycles.starts, "no cycle was proposed")
}

func TestStatusReadsOnlyThisAgentsCycles(t *testing.T) {
	cs, _ := connect(t, "bot")
	for _, id := range []string{"cycle/other/x", "agent/bot", "cycle/bot"} {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: ToolCycleStatus, Arguments: map[string]any{"workflow_id": id}})
		require.NoError(t, err)
		assert.True(t, res.IsError, id)
		assert.Contains(t, res.Content[0].(*mcp.TextContent).Text, "is not a cycle of agent bot")
	}
}

func TestNewRefusesWhatCannotBeServed(t *testing.T) {
	cat := loadCatalog(t)
	cycles := starter.New(nil)
	_, err := New(Config{AgentID: "nobody", Catalog: cat, Cycles: cycles})
	assert.ErrorContains(t, err, `agent "nobody" is not in the catalog`)
	_, err = New(Config{Catalog: cat, Cycles: cycles})
	assert.ErrorContains(t, err, "agent id is required")
	_, err = New(Config{AgentID: "bot", Catalog: cat, Cycles: cycles, UIBaseURL: "javascript:alert(1)"})
	assert.ErrorContains(t, err, "not an http(s) URL")

	collide := fmt.Sprintf(`
actions:
  - name: note
    image: %s
    command: ["true"]
    params_schema: {type: object, properties: {rationale: {type: string}}}
    class: read
    risk: low
    vault_policies: [p]
agents:
  - {id: bot, owner: t, namespace: bot, actions: [note], phases: {read: autonomous, write: shadow}}
`, img)
	c2, err := policy.Parse("collide", []byte(collide))
	require.NoError(t, err)
	_, err = New(Config{AgentID: "bot", Catalog: c2, Cycles: cycles})
	assert.ErrorContains(t, err, `action type note: its parameter "rationale" collides with the MCP tool's own argument`)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.next.RoundTrip(r)
}

func TestStreamableHTTPNeedsTheBearerToken(t *testing.T) {
	cat := loadCatalog(t)
	srv, err := New(Config{AgentID: "bot", Catalog: cat, Cycles: &agentStates{Client: starter.New(nil, starter.WithCatalog(cat)), err: starter.ErrNoAgentState}})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.HTTPHandler("s3cret"))
	defer hs.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"", false}, {"wrong", false}, {"s3cret", true}} {
		t.Run("token "+tc.token, func(t *testing.T) {
			tr := &mcp.StreamableClientTransport{Endpoint: hs.URL, MaxRetries: -1, DisableStandaloneSSE: true,
				HTTPClient: &http.Client{Transport: bearer{tc.token, http.DefaultTransport}}}
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx, tr, nil)
			if !tc.ok {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "Unauthorized")
				return
			}
			require.NoError(t, err)
			defer cs.Close()
			tools, err := cs.ListTools(ctx, nil)
			require.NoError(t, err)
			assert.Len(t, tools.Tools, 6)
		})
	}
}
