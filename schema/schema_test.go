package schema_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/schema"
)

// The committed schemas are what the Go types generate now: a contract
// change without regenerating fails here (and so in CI).
func TestSchemasAreCurrent(t *testing.T) {
	files, err := schema.Generate("..")
	require.NoError(t, err)
	require.Len(t, files, len(schema.Specs))
	for _, f := range files {
		committed, err := os.ReadFile(f.Name)
		if err != nil {
			t.Errorf("%s is not committed: run `go generate ./schema` (or `make schema`): %v", f.Name, err)
			continue
		}
		if !bytes.Equal(committed, f.Data) {
			t.Errorf("schema/%s is stale: the Go types changed, run `go generate ./schema` (or `make schema`) and commit it (-committed +generated):\n%s",
				f.Name, cmp.Diff(string(committed), string(f.Data)))
		}
	}
}

// compiled are the committed schemas, by file name.
func compiled(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat() // date-time is checked, not only annotated
	ids := map[string]string{}
	for _, s := range schema.Specs {
		f, err := os.Open(s.File)
		require.NoError(t, err)
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		require.NoError(t, err, s.File)
		id := schema.BaseURL + s.File
		require.Equal(t, id, doc.(map[string]any)["$id"], "%s: $id", s.File)
		require.NoError(t, c.AddResource(id, doc))
		ids[s.File] = id
	}
	out := map[string]*jsonschema.Schema{}
	for file, id := range ids {
		sch, err := c.Compile(id)
		require.NoError(t, err, file)
		out[file] = sch
	}
	return out
}

func validate(sch *jsonschema.Schema, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// decodeStrict decodes data into a new value of typ, refusing unknown
// fields: what the schema accepts, the Go contract reads whole.
func decodeStrict(t *testing.T, data []byte, typ reflect.Type) any {
	t.Helper()
	v := reflect.New(typ)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v.Interface()))
	return v.Elem().Interface()
}

// Every example a non-Go agent copies is valid against its schema and
// reads into the Go type it stands for.
func TestExamplesValidate(t *testing.T) {
	schemas := compiled(t)
	paths, err := filepath.Glob("../examples/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			var spec *schema.Spec
			for i, s := range schema.Specs {
				if strings.HasPrefix(filepath.Base(p), strings.TrimSuffix(s.File, ".schema.json")) {
					spec = &schema.Specs[i]
				}
			}
			require.NotNil(t, spec, "no schema for example %s: name it after one of schema/*.schema.json", p)
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			require.NoError(t, validate(schemas[spec.File], data))
			switch v := decodeStrict(t, data, spec.Type).(type) {
			case contract.CycleRequest:
				assert.NoError(t, v.Validate())
			case contract.CycleResult:
				assert.Nil(t, contract.VerifyAudit(v.Audit), "the example's audit trail verifies")
			}
		})
	}
}

// history is the part of a recorded Temporal history (JSON export) that
// carries the contract: the cycle's input, its result, and the decisions
// sent to it.
type history struct {
	Events []struct {
		Started *struct {
			WorkflowType struct{ Name string } `json:"workflowType"`
			Input        payloads              `json:"input"`
		} `json:"workflowExecutionStartedEventAttributes"`
		Completed *struct {
			Result payloads `json:"result"`
		} `json:"workflowExecutionCompletedEventAttributes"`
		UpdateAccepted *struct {
			AcceptedRequest struct {
				Input struct {
					Name string   `json:"name"`
					Args payloads `json:"args"`
				} `json:"input"`
			} `json:"acceptedRequest"`
		} `json:"workflowExecutionUpdateAcceptedEventAttributes"`
		Signaled *struct {
			SignalName string   `json:"signalName"`
			Input      payloads `json:"input"`
		} `json:"workflowExecutionSignaledEventAttributes"`
	} `json:"events"`
}

type payloads struct {
	Payloads []struct {
		Data []byte `json:"data"` // base64 in the export: encoding/json decodes it
	} `json:"payloads"`
}

// What the real worker took and answered, recorded in workflows/testdata
// on the real stack, is valid against the schemas: the schemas describe
// the contract as it runs, not only as the Go types say.
func TestRecordedHistoriesValidate(t *testing.T) {
	schemas := compiled(t)
	paths, err := filepath.Glob("../workflows/testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	seen := map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		var h history
		require.NoError(t, json.Unmarshal(b, &h), p)
		if len(h.Events) == 0 || h.Events[0].Started == nil || h.Events[0].Started.WorkflowType.Name != contract.CycleWorkflowName {
			continue
		}
		check := func(file, what string, pl payloads) {
			for _, d := range pl.Payloads {
				seen[file]++
				assert.NoError(t, validate(schemas[file], d.Data), "%s: %s %s", filepath.Base(p), what, d.Data)
			}
		}
		for _, e := range h.Events {
			switch {
			case e.Started != nil:
				check("cycle-request.schema.json", "input", e.Started.Input)
			case e.Completed != nil:
				check("cycle-result.schema.json", "result", e.Completed.Result)
			case e.UpdateAccepted != nil && e.UpdateAccepted.AcceptedRequest.Input.Name == contract.UpdateDecide:
				check("decision.schema.json", "decide update", e.UpdateAccepted.AcceptedRequest.Input.Args)
			case e.Signaled != nil && e.Signaled.SignalName == contract.SignalDecide:
				check("decision.schema.json", "decide signal", e.Signaled.Input)
			}
		}
	}
	for _, s := range schema.Specs {
		assert.Positive(t, seen[s.File], "no recorded payload checked against %s", s.File)
	}
}

// What Go itself writes validates: a result as the status query answers it
// before the cycle is planned (empty outcome, null actions) and a full one.
func TestGoEncodedResultsValidate(t *testing.T) {
	sch := compiled(t)["cycle-result.schema.json"]
	at := time.Date(2026, 11, 25, 14, 3, 8, 0, time.UTC)
	full := contract.CycleResult{WorkflowID: "cycle/a/c", AgentID: "a", CycleID: "c", Outcome: contract.OutcomeDenied,
		Actions: []contract.ActionResult{{Type: "scale", Outcome: contract.OutcomeDenied,
			Decision: policy.Decision{Phase: policy.PhaseAdvisory, Mode: policy.ModeApprove, Approvals: 1, Rule: "r"},
			Rendered: &policy.RenderedAction{Type: "scale", Class: policy.ClassWrite, Risk: policy.RiskMedium, Deadline: policy.Duration(90 * time.Second),
				Decision: policy.Decision{Phase: policy.PhaseAdvisory, Mode: policy.ModeApprove}},
			Decisions: []contract.DecisionRecord{{Approver: "U1", Kind: contract.DecisionDeny, Via: "slack", At: at, Comment: "not now"}},
			Rollback: &contract.ActionResult{Type: "undo", Outcome: contract.OutcomeSucceeded,
				Decision: policy.Decision{Phase: policy.PhaseAutonomous, Mode: policy.ModeRun, Rule: "rollback of a failed action runs"}}}},
		Audit: contract.AppendAudit(nil, at, contract.AuditCycle, nil, "cycle started", nil)}
	for name, res := range map[string]contract.CycleResult{"unplanned": {WorkflowID: "cycle/a/c"}, "full": full} {
		b, err := json.Marshal(res)
		require.NoError(t, err)
		assert.NoError(t, validate(sch, b), "%s: %s", name, b)
	}
}

func withField(t *testing.T, base []byte, path []string, value any) []byte {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(base, &doc))
	m := doc
	for _, k := range path[:len(path)-1] {
		switch next := m[k].(type) {
		case map[string]any:
			m = next
		case []any:
			m = next[0].(map[string]any)
		}
	}
	if value == nil {
		delete(m, path[len(path)-1])
	} else {
		m[path[len(path)-1]] = value
	}
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	return b
}

// The request schema refuses what the worker refuses
// (contract.CycleRequest.Validate), and is stricter only where the worker
// would silently drop or zero what the agent meant.
func TestRequestSchemaAgreesWithValidate(t *testing.T) {
	sch := compiled(t)["cycle-request.schema.json"]
	example, err := os.ReadFile("../examples/cycle-request.json")
	require.NoError(t, err)
	tests := map[string]struct {
		path  []string
		value any // nil: remove the field
		valid bool
		// stricter: the worker reads it, but not as the agent meant.
		stricter bool
	}{
		"the example":                          {path: []string{"principal"}, value: "agent:sample", valid: true},
		"missing agent_id":                     {path: []string{"agent_id"}},
		"empty agent_id":                       {path: []string{"agent_id"}, value: ""},
		"missing cycle_id":                     {path: []string{"cycle_id"}},
		"cycle_id with a slash":                {path: []string{"cycle_id"}, value: "a/b"},
		"cycle_id starting with a dot":         {path: []string{"cycle_id"}, value: ".a"},
		"cycle_id of 128 characters":           {path: []string{"cycle_id"}, value: strings.Repeat("a", 128), valid: true},
		"cycle_id of 129 characters":           {path: []string{"cycle_id"}, value: strings.Repeat("a", 129)},
		"no actions":                           {path: []string{"actions"}, value: []any{}},
		"missing actions":                      {path: []string{"actions"}},
		"action without type":                  {path: []string{"actions", "type"}},
		"action with empty type":               {path: []string{"actions", "type"}, value: ""},
		"action without params":                {path: []string{"actions", "params"}, valid: true},
		"thought with empty content":           {path: []string{"thoughts", "content"}, value: ""},
		"confidence above 1":                   {path: []string{"thoughts", "confidence"}, value: 1.5},
		"confidence below 0":                   {path: []string{"thoughts", "confidence"}, value: -0.1},
		"no thoughts":                          {path: []string{"thoughts"}, valid: true},
		"unknown top-level field":              {path: []string{"agentid"}, value: "sample", stricter: true},
		"unknown action field":                 {path: []string{"actions", "params_"}, value: map[string]any{}, stricter: true},
		"thought without confidence":           {path: []string{"thoughts", "confidence"}, stricter: true},
		"agent_id as a number":                 {path: []string{"agent_id"}, value: 7, stricter: true},
		"signed":                               {path: []string{"signature"}, value: map[string]any{"key_version": 1, "signed_at": "2026-11-25T14:03:07Z", "signature": "vault:v1:AAAA"}, valid: true},
		"signed_at not RFC 3339":               {path: []string{"signature"}, value: map[string]any{"key_version": 1, "signed_at": "25/11/2026", "signature": "vault:v1:AAAA"}, stricter: true},
		"signature without its signature text": {path: []string{"signature"}, value: map[string]any{"key_version": 1, "signed_at": "2026-11-25T14:03:07Z"}, stricter: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			data := withField(t, example, tc.path, tc.value)
			err := validate(sch, data)
			if tc.valid {
				assert.NoError(t, err, "%s", data)
			} else {
				assert.Error(t, err, "the schema accepts %s", data)
			}
			var req contract.CycleRequest
			if json.Unmarshal(data, &req) != nil {
				require.True(t, tc.stricter, "the worker cannot read %s", data)
				return
			}
			if !tc.stricter {
				assert.Equal(t, tc.valid, req.Validate() == nil, "Validate and the schema disagree on %s: %v", data, req.Validate())
			}
		})
	}
}

// The decision schema refuses what the decide Update's validator would
// refuse from its shape alone.
func TestDecisionSchemaRefusesMalformedDecisions(t *testing.T) {
	sch := compiled(t)["decision.schema.json"]
	example, err := os.ReadFile("../examples/decision.json")
	require.NoError(t, err)
	tests := map[string]struct {
		field string
		value any
		valid bool
	}{
		"the example":                      {field: "comment", value: "fine", valid: true},
		"without a comment":                {field: "comment", valid: true},
		"unknown decision kind":            {field: "decision", value: "maybe"},
		"decision kind of another case":    {field: "decision", value: "Approve"},
		"stop":                             {field: "decision", value: "stop", valid: true},
		"missing approver":                 {field: "approver"},
		"empty approver":                   {field: "approver", value: ""},
		"negative action index":            {field: "action_index", value: -1},
		"fractional action index":          {field: "action_index", value: 1.5},
		"hash that is not a sha256 in hex": {field: "action_hash", value: "ABC"},
		"missing hash":                     {field: "action_hash"},
		"unknown field":                    {field: "approved", value: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			data := withField(t, example, []string{tc.field}, tc.value)
			err := validate(sch, data)
			if tc.valid {
				assert.NoError(t, err, "%s", data)
			} else {
				assert.Error(t, err, "the schema accepts %s", data)
			}
		})
	}
}

// Enums come from the Go constants, read from the source: each lists the
// constants of its type (a new one is in the schema once it is generated).
func TestEnumsListTheGoConstants(t *testing.T) {
	files, err := schema.Generate("..")
	require.NoError(t, err)
	defs := map[string]map[string]any{}
	for _, f := range files {
		var doc struct {
			Defs map[string]map[string]any `json:"$defs"`
		}
		require.NoError(t, json.Unmarshal(f.Data, &doc))
		for k, v := range doc.Defs {
			defs[k] = v
		}
	}
	want := map[string][]string{
		"Outcome": {string(contract.OutcomeSucceeded), string(contract.OutcomeFailed), string(contract.OutcomeDenied),
			string(contract.OutcomeWouldDo), string(contract.OutcomeSkipped)},
		"DecisionKind": {string(contract.DecisionApprove), string(contract.DecisionDeny), string(contract.DecisionStop),
			string(contract.DecisionAgree), string(contract.DecisionDisagree)},
		"Phase": {string(policy.PhaseShadow), string(policy.PhaseAdvisory), string(policy.PhaseSupervised), string(policy.PhaseAutonomous)},
		"Mode":  {string(policy.ModeRun), string(policy.ModeWouldDo), string(policy.ModeApprove), string(policy.ModeVeto)},
		"Class": {string(policy.ClassRead), string(policy.ClassWrite)},
		"Risk":  {string(policy.RiskLow), string(policy.RiskMedium), string(policy.RiskHigh), string(policy.RiskCritical)},
	}
	for name, values := range want {
		require.Contains(t, defs, name)
		assert.Equal(t, "string", defs[name]["type"], name)
		var got []string
		for _, v := range defs[name]["enum"].([]any) {
			got = append(got, v.(string))
		}
		assert.Subset(t, got, values, name)
	}
}
