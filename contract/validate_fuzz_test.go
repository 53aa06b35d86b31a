package contract_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"testing"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// paramRef is a template action that prints one param: the only kind the
// shipped catalog uses.
var paramRef = regexp.MustCompile(`\{\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// shellWord are the characters a param may bring into a `sh -c` script
// without adding or splitting words, expanding or redirecting anything.
var shellWord = regexp.MustCompile(`^[A-Za-z0-9._/:=@%+,-]*$`)

// FuzzCycleRequest validates fuzzed cycle requests (as an agent in any
// language sends them: JSON, plus one thought whose confidence is any
// float64, including those JSON cannot spell, such as NaN) and plans the valid ones against the shipped catalog.
// Invariants: nothing panics; a refusal names a field for every problem; a
// request that validates survives the JSON encoding that carries it to the
// workflow and still validates; and in what plans, a param value is only
// ever the text of its own reference in a command template: one argument
// per template, no template action run from a value, and no shell
// metacharacter in an argument handed to `sh -c`.
func FuzzCycleRequest(f *testing.F) {
	catalog, err := policy.LoadFile("../deploy/catalog.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"agent_id":"sample","cycle_id":"c-1","thoughts":[{"step":1,"content":"look","confidence":0.5}],"actions":[{"type":"cluster-read","params":{"service":"checkout"}},{"type":"scale-deployment","params":{"deployment":"checkout","replicas":5}}]}`), math.Float64bits(0.5))
	f.Add([]byte(`{"agent_id":"sample","cycle_id":"c-2","actions":[{"type":"flaky-write","params":{"deployment":"x; reboot"}}]}`), math.Float64bits(1.0))
	f.Add([]byte(`{"agent_id":"advisor","cycle_id":"x","actions":[{"type":"scale-deployment","params":{"deployment":"{{.replicas}}","replicas":1}}]}`), math.Float64bits(0.0))
	f.Add([]byte(`{"agent_id":"shadow-bot","cycle_id":"-bad","thoughts":[{"content":""}],"actions":[{"type":""}]}`), math.Float64bits(-1.0))
	f.Add([]byte(`{"agent_id":"sample","cycle_id":"c","actions":[{"type":"cluster-read","params":{"service":"a\nb"}}]}`), math.Float64bits(2.0))
	f.Add([]byte(`{}`), math.Float64bits(0.25))
	f.Add([]byte(`{"agent_id":"sample","cycle_id":"nan","actions":[{"type":"cluster-read","params":{"service":"checkout"}}]}`), math.Float64bits(math.NaN()))
	f.Fuzz(func(t *testing.T, raw []byte, confidenceBits uint64) {
		var req contract.CycleRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			return
		}
		checkRequest(t, catalog, req)
		req.Thoughts = append(req.Thoughts, contract.Thought{Step: len(req.Thoughts) + 1, Content: "fuzzed", Confidence: math.Float64frombits(confidenceBits)})
		checkRequest(t, catalog, req)
	})
}

func checkRequest(t *testing.T, catalog *policy.Catalog, req contract.CycleRequest) {
	t.Helper()
	if err := req.Validate(); err != nil {
		var rerr *policy.RequestError
		if !errors.As(err, &rerr) || len(rerr.Problems) == 0 {
			t.Fatalf("refused without a field error: %v", err)
		}
		for _, p := range rerr.Problems {
			if p.Field == "" || p.Msg == "" {
				t.Fatalf("a problem without its field or message: %+v", p)
			}
		}
		return
	}
	wire, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("a valid request cannot be sent to the workflow: %v", err)
	}
	var back contract.CycleRequest
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatalf("a valid request does not decode from its own encoding %s: %v", wire, err)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("a valid request is refused after a JSON round trip %s: %v", wire, err)
	}

	plan, err := catalog.Plan(req.AgentID, req.Actions)
	if err != nil {
		var rerr *policy.RequestError
		if !errors.As(err, &rerr) || len(rerr.Problems) == 0 {
			t.Fatalf("plan refused without a field error: %v", err)
		}
		return
	}
	for _, a := range plan.Actions {
		for ra := &a; ra != nil; ra = ra.Rollback {
			at, _ := catalog.Action(ra.Type)
			if !ra.VerifyHash() {
				t.Fatalf("%s: rendered action does not match its hash", ra.Type)
			}
			want := make([]string, len(at.Command))
			for i, tmpl := range at.Command {
				// One pass: the value inserted is never read as a template.
				want[i] = paramRef.ReplaceAllStringFunc(tmpl, func(ref string) string {
					return templateText(ra.Params[paramRef.FindStringSubmatch(ref)[1]])
				})
				if i > 0 && at.Command[i-1] == "-c" {
					for _, m := range paramRef.FindAllStringSubmatch(tmpl, -1) {
						if v := templateText(ra.Params[m[1]]); !shellWord.MatchString(v) {
							t.Fatalf("%s: param %s=%q reaches the shell script %q", ra.Type, m[1], v, ra.Command[i])
						}
					}
				}
			}
			if !slices.Equal(ra.Command, want) {
				t.Fatalf("%s: params %v rendered as %q, want %q", ra.Type, ra.Params, ra.Command, want)
			}
		}
	}
}

// templateText is how text/template prints a JSON value.
func templateText(v any) string {
	if v == nil {
		return "<no value>"
	}
	return fmt.Sprint(v)
}
