package schema

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

// refinement adds to one property what the Go type cannot say: the checks
// the worker makes beyond the type (contract.CycleRequest.Validate, the
// decide Update's validator) and a description where the field has no doc
// comment. A description here is refused once the field has a comment: the
// comment is the one source.
type refinement struct {
	typ   reflect.Type
	field string // the JSON name
	desc  string
	apply func(*jsonschema.Schema)
}

func minLen(n uint64) func(*jsonschema.Schema) {
	return func(s *jsonschema.Schema) { s.MinLength = &n }
}

var refinements = []refinement{
	// contract.CycleRequest.Validate.
	{typ: typeOf[contract.CycleRequest](), field: "agent_id", apply: minLen(1),
		desc: "The agent's id in the catalog. The request must be signed with this agent's key."},
	{typ: typeOf[contract.CycleRequest](), field: "cycle_id", apply: func(s *jsonschema.Schema) { s.Pattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` },
		desc: "The cycle's idempotency key, unique per agent: the workflow id must be cycle/<agent_id>/<cycle_id>."},
	{typ: typeOf[contract.CycleRequest](), field: "version", apply: func(s *jsonschema.Schema) { s.Pattern = `^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$` }},
	{typ: typeOf[contract.CycleRequest](), field: "correlation_id", apply: func(s *jsonschema.Schema) { s.Pattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` }},
	{typ: typeOf[contract.CycleRequest](), field: "thoughts",
		desc: "The agent's reasoning steps, recorded in the audit trail and shown to approvers."},
	{typ: typeOf[contract.CycleRequest](), field: "actions", apply: func(s *jsonschema.Schema) { one := uint64(1); s.MinItems = &one },
		desc: "The proposed actions, handled in order; at least one. A failed or denied action skips the rest."},
	{typ: typeOf[contract.Thought](), field: "step", desc: "The step's number in the agent's reasoning."},
	{typ: typeOf[contract.Thought](), field: "content", apply: minLen(1), desc: "What the agent thought."},
	{typ: typeOf[contract.Thought](), field: "confidence", apply: func(s *jsonschema.Schema) {
		s.Minimum, s.Maximum = "0", "1"
	}, desc: "How sure the agent is, from 0 to 1."},
	{typ: typeOf[policy.Proposal](), field: "type", apply: minLen(1),
		desc: "An action type of the catalog (deploy/catalog.yaml) that the agent may use."},
	{typ: typeOf[policy.Proposal](), field: "params",
		desc: "The action's parameters, checked against its action type's params_schema."},
	{typ: typeOf[policy.Proposal](), field: "rationale", desc: "Why the agent proposes the action; shown to approvers."},
	// The signature's form (the workflow refuses a signed_at that is not
	// RFC 3339 before asking Vault).
	{typ: typeOf[contract.RequestSignature](), field: "signed_at", apply: func(s *jsonschema.Schema) { s.Format = "date-time" }},
	{typ: typeOf[contract.RequestSignature](), field: "key_version", apply: func(s *jsonschema.Schema) { s.Minimum = "1" }},
	// The decide Update's validator.
	{typ: typeOf[contract.Decision](), field: "action_index", apply: func(s *jsonschema.Schema) { s.Minimum = "0" },
		desc: "The action's index in the request's actions."},
	{typ: typeOf[contract.Decision](), field: "action_hash", apply: func(s *jsonschema.Schema) { s.Pattern = "^[0-9a-f]{64}$" },
		desc: "The hash of the rendered action the human was shown (the pending query, or actions[].hash of the cycle's status): a decision on an action that changed since is refused."},
	{typ: typeOf[contract.Decision](), field: "approver", apply: minLen(1)},
	{typ: typeOf[contract.Decision](), field: "comment", desc: "Why, in the decider's words; recorded with the decision."},
	// The result.
	{typ: typeOf[contract.CycleResult](), field: "workflow_id", desc: "cycle/<agent_id>/<cycle_id>."},
	{typ: typeOf[contract.CycleResult](), field: "outcome", apply: func(s *jsonschema.Schema) {
		*s = jsonschema.Schema{AnyOf: []*jsonschema.Schema{{Ref: s.Ref}, {Const: ""}}}
	}, desc: `How the cycle ended: succeeded, or failed or denied at the first action that did. Empty while the cycle runs (the status query answers the result so far).`},
	{typ: typeOf[contract.CycleResult](), field: "actions", desc: "One result per action, in order; null or shorter while the cycle runs."},
	{typ: typeOf[contract.ActionResult](), field: "index", desc: "The action's index in the request's actions."},
	{typ: typeOf[contract.ActionResult](), field: "decision", desc: "The policy's verdict on the action: its agent's phase, what the workflow does with it and the rule that decided."},
	{typ: typeOf[contract.ActionResult](), field: "hash", desc: "The hash of the rendered action; human decisions are bound to it."},
	{typ: typeOf[contract.ActionResult](), field: "job", desc: "The Kubernetes Job that ran the action."},
	{typ: typeOf[contract.ActionResult](), field: "lease_accessor", desc: "The accessor of the Vault token the action ran with (never the token)."},
	{typ: typeOf[contract.ActionResult](), field: "lease_ttl", desc: "The token's TTL, in nanoseconds."},
	{typ: typeOf[contract.ActionResult](), field: "exit_code", desc: "The container's exit code."},
	{typ: typeOf[contract.ActionResult](), field: "reason", desc: "Why the Job ended, as Kubernetes says it (\"Completed\", \"Error\", \"DeadlineExceeded\")."},
	{typ: typeOf[contract.ActionResult](), field: "output", desc: "The container's termination message (at most 4 KiB)."},
	{typ: typeOf[contract.ActionResult](), field: "error", desc: "Why the action failed or was denied, when it did not run to an exit code."},
}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// refine applies the refinements whose type the schema holds, noting
// which in used.
func refine(root *jsonschema.Schema, rootType reflect.Type, names map[string]reflect.Type, used map[int]bool) error {
	var errs []error
	for i, rf := range refinements {
		def := defOf(root, rootType, names, rf.typ)
		if def == nil {
			continue
		}
		used[i] = true
		p, ok := def.Properties.Get(rf.field)
		if !ok {
			errs = append(errs, fmt.Errorf("refinement of %s: no property %q", rf.typ, rf.field))
			continue
		}
		if rf.desc != "" {
			if p.Description != "" {
				errs = append(errs, fmt.Errorf("refinement of %s.%s: the field has a doc comment now, drop the description here", rf.typ, rf.field))
				continue
			}
			p.Description = rf.desc
		}
		if rf.apply != nil {
			inner := p
			if len(p.AnyOf) == 2 && p.AnyOf[1].Type == "null" { // nullable output
				inner = p.AnyOf[0]
			}
			desc := p.Description
			rf.apply(inner)
			p.Description = desc
		}
	}
	return errors.Join(errs...)
}
