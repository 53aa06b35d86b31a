package policy

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary YAML to the catalog parser. Invariants: it never
// panics; a refusal is a *Problems listing at least one problem; a catalog
// that parses is a fixed point (its JSON encoding parses to the same
// catalog), and every agent can plan every action it is allowed, with the
// fuzzed params or none, without panicking, each rendered action bound to
// its hash and carrying one argument per command template.
func FuzzParse(f *testing.F) {
	shipped, err := os.ReadFile("../deploy/catalog.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped, []byte(`{"deployment":"web","replicas":3,"service":"checkout"}`))
	f.Add([]byte(testCatalog), []byte(`{"replicas":3,"path":"/etc/x"}`))
	f.Add([]byte(testCatalog), []byte(`{"replicas":30}`))
	f.Add([]byte("actions: []\nagents: []\n"), []byte(`{}`))
	f.Add([]byte(`{"actions":[{"name":"a","image":"x@sha256:`+digest[8:]+`","command":["{{.x}}","{{index . \"x\"}}","{{printf \"%q\" .x}}"],"class":"read","risk":"low","vault_policies":["p"],"params_schema":{"type":"object"}}],"agents":[{"id":"b","owner":"o","namespace":"n","actions":["a"],"phases":{"read":"shadow","write":"advisory"}}]}`), []byte(`{"x":"{{.y}}"}`))
	f.Add([]byte("actions:\n  - name: a\n    command: ['{{']\n    params_schema: {$ref: '#/nope'}\n"), []byte(`null`))
	f.Add([]byte("agents:\n  - null\n  - {id: x, phases: {exec: shadow}, reminder_after: -1s}\n"), []byte(`[]`))
	f.Fuzz(func(t *testing.T, data, params []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var probs *Problems
			if !errors.As(err, &probs) || len(probs.Items) == 0 {
				t.Fatalf("refused without listing a problem: %v", err)
			}
			return
		}
		enc, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("a parsed catalog does not encode: %v", err)
		}
		again, err := Parse("again.json", enc)
		if err != nil {
			t.Fatalf("a parsed catalog does not parse again from its own encoding %s: %v", enc, err)
		}
		if enc2, _ := json.Marshal(again); string(enc2) != string(enc) {
			t.Fatalf("parsing is not a fixed point:\n%s\n%s", enc, enc2)
		}

		var fuzzed map[string]any
		_ = json.Unmarshal(params, &fuzzed)
		for _, id := range c.AgentIDs() {
			ag, _ := c.Agent(id)
			for _, name := range ag.Actions {
				for _, p := range []map[string]any{nil, fuzzed} {
					plan, err := c.Plan(id, []Proposal{{Type: name, Params: p}})
					if err != nil {
						var rerr *RequestError
						if !errors.As(err, &rerr) || len(rerr.Problems) == 0 {
							t.Fatalf("plan %s/%s refused without a field error: %v", id, name, err)
						}
						continue
					}
					a, _ := c.Action(name)
					checkRendered(t, a, plan.Actions[0])
					if (a.Rollback != "") != (plan.Actions[0].Rollback != nil) {
						t.Fatalf("plan %s/%s: rollback %q rendered as %v", id, name, a.Rollback, plan.Actions[0].Rollback)
					}
					if rb := plan.Actions[0].Rollback; rb != nil {
						checkRendered(t, c.actions[a.Rollback], *rb)
					}
				}
			}
		}
	})
}

func checkRendered(t *testing.T, a *ActionType, ra RenderedAction) {
	t.Helper()
	if !ra.VerifyHash() {
		t.Fatalf("%s: rendered action does not match its hash", a.Name)
	}
	if len(ra.Command) != len(a.Command) {
		t.Fatalf("%s: %d command templates rendered as %d arguments %q", a.Name, len(a.Command), len(ra.Command), ra.Command)
	}
}
