// Package policy holds the agent and action catalog, the trust phases and the
// evaluation that decides what an agent may do. It is pure code with no I/O
// beyond reading the catalog file, so workflows and tests can rely on it.
package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// Class says whether an action has side effects.
type Class string

const (
	ClassRead  Class = "read"
	ClassWrite Class = "write"
)

// Risk orders how much damage an action can do.
type Risk string

const (
	RiskLow      Risk = "low"
	RiskMedium   Risk = "medium"
	RiskHigh     Risk = "high"
	RiskCritical Risk = "critical"
)

// Duration is a time.Duration written as "90s" or "5m" in YAML and JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"5m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// EgressRule allows traffic from an action's Pod to one CIDR and port.
type EgressRule struct {
	CIDR     string `json:"cidr"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol,omitempty"` // Default: TCP
}

// Resources are the requests (= limits) of an action's container.
type Resources struct {
	CPU    string `json:"cpu,omitempty"`    // Default: 100m
	Memory string `json:"memory,omitempty"` // Default: 64Mi
}

// Bound limits a numeric parameter for supervised mode.
type Bound struct {
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
}

// ActionType is a registered tool an agent may propose. Anything not in the
// catalog is denied.
type ActionType struct {
	Name          string          `json:"name"`
	Description   string          `json:"description,omitempty"`
	Image         string          `json:"image"`
	Command       []string        `json:"command"`
	ParamsSchema  json.RawMessage `json:"params_schema,omitempty"`
	Class         Class           `json:"class"`
	Risk          Risk            `json:"risk"`
	VaultPolicies []string        `json:"vault_policies,omitempty"`
	// VaultDBRole, "<mount>/<role>" of Vault's database engine, gives the
	// action dynamic database credentials (DB_USERNAME, DB_PASSWORD), read
	// with the action's own token and revoked with it.
	VaultDBRole string `json:"vault_db_role,omitempty"`
	// VaultKV maps env var names to KV v2 values, "<mount>/<path>#<key>",
	// read with the action's own token into the Job's Secret.
	VaultKV   map[string]string `json:"vault_kv,omitempty"`
	Egress    []EgressRule      `json:"egress,omitempty"`
	Resources Resources         `json:"resources,omitempty"`
	Deadline  Duration          `json:"deadline,omitempty"` // Default: 5m
	Rollback  string            `json:"rollback,omitempty"`
	MaxPhase  Phase             `json:"max_phase,omitempty"`
	Bounds    map[string]Bound  `json:"bounds,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	// PodAnnotations are copied onto the Job's Pod; the dev catalog uses them
	// to tell the kwok simulator what the action "prints".
	PodAnnotations map[string]string `json:"pod_annotations,omitempty"`

	schema    *jsonschema.Schema
	templates []*template.Template
}

// Agent is an autonomous agent and what it has earned.
type Agent struct {
	ID              string          `json:"id"`
	Owner           string          `json:"owner"`
	Approvers       []string        `json:"approvers,omitempty"`
	Namespace       string          `json:"namespace"`
	Actions         []string        `json:"actions"`
	Phases          map[Class]Phase `json:"phases"`
	ApprovalTimeout Duration        `json:"approval_timeout,omitempty"` // Default: 15m
	VetoWindow      Duration        `json:"veto_window,omitempty"`      // Default: 2m
	SlackChannel    string          `json:"slack_channel,omitempty"`
	// ReminderAfter re-posts a waiting approval in the agent's channel;
	// EscalateAfter posts it to EscalationChannel. Both optional, both
	// before approval_timeout.
	ReminderAfter     Duration `json:"reminder_after,omitempty"`
	EscalateAfter     Duration `json:"escalate_after,omitempty"`
	EscalationChannel string   `json:"escalation_channel,omitempty"`
	// Quota bounds what the agent's namespace may hold at once: Pods (so
	// concurrently running Jobs), CPU and memory. Zero values keep the
	// defaults (k8s.DefaultQuota*: 10 Pods, 2 CPUs, 2Gi).
	Quota AgentQuota `json:"quota,omitzero"`
	// Budgets bound the actions it starts and the approvals it asks for
	// (see Budgets); zero values take the defaults, filled in at load.
	Budgets Budgets `json:"budgets,omitzero"`
	// Trust says how the agent earns and loses phases: promotion gates and
	// demotion triggers (see Trust); zero values take the defaults.
	Trust Trust `json:"trust,omitzero"`
}

// AgentQuota is an agent namespace's ResourceQuota.
type AgentQuota struct {
	Pods   int    `json:"pods,omitempty"`
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

// Catalog is the loaded, validated set of action types and agents.
type Catalog struct {
	Actions []*ActionType `json:"actions"`
	Agents  []*Agent      `json:"agents"`

	actions map[string]*ActionType
	agents  map[string]*Agent
}

// Default values applied at load time.
const (
	DefaultDeadline        = 5 * time.Minute
	DefaultApprovalTimeout = 15 * time.Minute
	DefaultVetoWindow      = 2 * time.Minute
	DefaultCPU             = "100m"
	DefaultMemory          = "64Mi"
)

// LoadFile reads and validates a catalog file.
func LoadFile(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return Parse(path, data)
}

// Problems lists every problem found in a catalog, each with its location.
type Problems struct {
	File  string
	Items []string
}

func (p *Problems) add(format string, args ...any) {
	p.Items = append(p.Items, fmt.Sprintf(format, args...))
}

func (p *Problems) Error() string {
	return fmt.Sprintf("invalid catalog %s: %d problem(s):\n  %s", p.File, len(p.Items), strings.Join(p.Items, "\n  "))
}

var (
	digestRef = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:-]*@sha256:[a-f0-9]{64}$`)
	dnsLabel  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	idPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$`)
	envName   = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
)

// Parse validates catalog YAML (or JSON) and reports every problem it finds.
// name is used in messages only.
func Parse(name string, data []byte) (*Catalog, error) {
	probs := &Problems{File: name}
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		probs.add("syntax: %v", err)
		return nil, probs
	}
	var c Catalog
	dec := json.NewDecoder(strings.NewReader(string(jsonData)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		probs.add("%v", err)
		return nil, probs
	}
	c.actions = map[string]*ActionType{}
	c.agents = map[string]*Agent{}
	for i, a := range c.Actions {
		at := fmt.Sprintf("actions[%d]", i)
		if a == nil {
			probs.add("%s: empty entry", at)
			continue
		}
		if a.Name != "" {
			at = fmt.Sprintf("actions[%d] (%s)", i, a.Name)
		}
		validateAction(probs, at, a)
		if _, dup := c.actions[a.Name]; dup {
			probs.add("%s.name: duplicate action type %q", at, a.Name)
		}
		c.actions[a.Name] = a
	}
	for i, a := range c.Actions {
		if a != nil && a.Rollback != "" {
			if _, ok := c.actions[a.Rollback]; !ok {
				probs.add("actions[%d] (%s).rollback: unknown action type %q", i, a.Name, a.Rollback)
			}
		}
	}
	for i, ag := range c.Agents {
		at := fmt.Sprintf("agents[%d]", i)
		if ag == nil {
			probs.add("%s: empty entry", at)
			continue
		}
		if ag.ID != "" {
			at = fmt.Sprintf("agents[%d] (%s)", i, ag.ID)
		}
		validateAgent(probs, at, ag, c.actions)
		if _, dup := c.agents[ag.ID]; dup {
			probs.add("%s.id: duplicate agent %q", at, ag.ID)
		}
		c.agents[ag.ID] = ag
	}
	if len(probs.Items) > 0 {
		return nil, probs
	}
	return &c, nil
}

func validateAction(probs *Problems, at string, a *ActionType) {
	if !dnsLabel.MatchString(a.Name) {
		probs.add("%s.name: must be a lowercase DNS label, got %q", at, a.Name)
	}
	if !digestRef.MatchString(a.Image) {
		probs.add("%s.image: must be pinned by digest (name@sha256:<64 hex>), got %q", at, a.Image)
	}
	if len(a.Command) == 0 {
		probs.add("%s.command: required", at)
	}
	for j, arg := range a.Command {
		t, err := template.New(fmt.Sprint(j)).Option("missingkey=error").Parse(arg)
		if err != nil {
			probs.add("%s.command[%d]: %v", at, j, err)
			continue
		}
		a.templates = append(a.templates, t)
	}
	switch a.Class {
	case ClassRead, ClassWrite:
	default:
		probs.add("%s.class: must be read or write, got %q", at, a.Class)
	}
	switch a.Risk {
	case RiskLow, RiskMedium, RiskHigh, RiskCritical:
	default:
		probs.add("%s.risk: must be low, medium, high or critical, got %q", at, a.Risk)
	}
	if len(a.VaultPolicies) == 0 {
		// Every action runs with its own leased credential: deny by default.
		probs.add("%s.vault_policies: at least one Vault policy is required", at)
	}
	if a.VaultDBRole != "" {
		if m, r, ok := strings.Cut(a.VaultDBRole, "/"); !ok || m == "" || r == "" || strings.Contains(r, "/") {
			probs.add("%s.vault_db_role: want <mount>/<role>, got %q", at, a.VaultDBRole)
		}
	}
	for _, env := range sortedKeys(a.VaultKV) {
		ref := a.VaultKV[env]
		if !envName.MatchString(env) || env == "VAULT_TOKEN" || strings.HasPrefix(env, "DB_") {
			probs.add("%s.vault_kv: %q is not a usable env var name", at, env)
		}
		path, key, ok := strings.Cut(ref, "#")
		if !ok || key == "" || !strings.Contains(path, "/") {
			probs.add("%s.vault_kv.%s: want <mount>/<path>#<key>, got %q", at, env, ref)
		}
	}
	if a.MaxPhase != "" && !a.MaxPhase.Valid() {
		probs.add("%s.max_phase: unknown phase %q", at, a.MaxPhase)
	}
	for j, e := range a.Egress {
		if _, err := netip.ParsePrefix(e.CIDR); err != nil {
			probs.add("%s.egress[%d].cidr: %v", at, j, err)
		}
		if e.Port < 1 || e.Port > 65535 {
			probs.add("%s.egress[%d].port: must be 1-65535, got %d", at, j, e.Port)
		}
		switch e.Protocol {
		case "", "TCP", "UDP":
		default:
			probs.add("%s.egress[%d].protocol: must be TCP or UDP, got %q", at, j, e.Protocol)
		}
	}
	if a.Deadline < 0 {
		probs.add("%s.deadline: must be positive", at)
	}
	if a.Deadline == 0 {
		a.Deadline = Duration(DefaultDeadline)
	}
	if a.Resources.CPU == "" {
		a.Resources.CPU = DefaultCPU
	}
	if a.Resources.Memory == "" {
		a.Resources.Memory = DefaultMemory
	}
	schemaDoc := a.ParamsSchema
	if len(schemaDoc) == 0 {
		// No schema: the action takes no parameters at all.
		schemaDoc = json.RawMessage(`{"type":"object","additionalProperties":false}`)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(schemaDoc)))
	if err != nil {
		probs.add("%s.params_schema: %v", at, err)
		return
	}
	c := jsonschema.NewCompiler()
	url := "airlock:///" + a.Name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		probs.add("%s.params_schema: %v", at, err)
		return
	}
	s, err := c.Compile(url)
	if err != nil {
		probs.add("%s.params_schema: %v", at, err)
		return
	}
	a.schema = s
}

func validateAgent(probs *Problems, at string, ag *Agent, actions map[string]*ActionType) {
	if !idPattern.MatchString(ag.ID) {
		probs.add("%s.id: must be lowercase letters, digits and '-', at most 40 characters, got %q", at, ag.ID)
	}
	if ag.Owner == "" {
		probs.add("%s.owner: required", at)
	}
	if !dnsLabel.MatchString(ag.Namespace) {
		probs.add("%s.namespace: must be a DNS label, got %q", at, ag.Namespace)
	}
	for j, name := range ag.Actions {
		if _, ok := actions[name]; !ok {
			probs.add("%s.actions[%d]: unknown action type %q", at, j, name)
		}
	}
	for _, cl := range []Class{ClassRead, ClassWrite} {
		p, ok := ag.Phases[cl]
		if !ok {
			probs.add("%s.phases.%s: required (shadow, advisory, supervised or autonomous)", at, cl)
		} else if !p.Valid() {
			probs.add("%s.phases.%s: unknown phase %q", at, cl, p)
		}
	}
	for cl := range ag.Phases {
		if cl != ClassRead && cl != ClassWrite {
			probs.add("%s.phases: unknown class %q", at, cl)
		}
	}
	if ag.ApprovalTimeout == 0 {
		ag.ApprovalTimeout = Duration(DefaultApprovalTimeout)
	}
	if ag.VetoWindow == 0 {
		ag.VetoWindow = Duration(DefaultVetoWindow)
	}
	if ag.ApprovalTimeout < 0 || ag.VetoWindow < 0 {
		probs.add("%s: approval_timeout and veto_window must be positive", at)
	}
	if ag.ReminderAfter < 0 || ag.ReminderAfter >= ag.ApprovalTimeout && ag.ReminderAfter != 0 {
		probs.add("%s.reminder_after: must be shorter than approval_timeout (%s)", at, time.Duration(ag.ApprovalTimeout))
	}
	if ag.EscalateAfter < 0 || ag.EscalateAfter >= ag.ApprovalTimeout && ag.EscalateAfter != 0 {
		probs.add("%s.escalate_after: must be shorter than approval_timeout (%s)", at, time.Duration(ag.ApprovalTimeout))
	}
	if ag.EscalateAfter != 0 && ag.EscalationChannel == "" {
		probs.add("%s.escalation_channel: required with escalate_after", at)
	}
	if ag.Quota.Pods < 0 {
		probs.add("%s.quota.pods: must not be negative", at)
	}
	for _, q := range []struct{ field, v string }{{"cpu", ag.Quota.CPU}, {"memory", ag.Quota.Memory}} {
		if q.v != "" && !quantityRE.MatchString(q.v) {
			probs.add("%s.quota.%s: %q is not a Kubernetes quantity", at, q.field, q.v)
		}
	}
	validateBudgets(probs, at, &ag.Budgets)
	validateTrust(probs, at, &ag.Trust)
}

// quantityRE accepts Kubernetes quantities such as 500m, 2, 1.5, 2Gi, 512Mi.
var quantityRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)

// Agent returns the agent with the given id.
func (c *Catalog) Agent(id string) (*Agent, bool) {
	a, ok := c.agents[id]
	return a, ok
}

// Action returns the action type with the given name.
func (c *Catalog) Action(name string) (*ActionType, bool) {
	a, ok := c.actions[name]
	return a, ok
}

// AgentIDs lists the agents in the catalog, sorted.
func (c *Catalog) AgentIDs() []string {
	ids := make([]string, 0, len(c.agents))
	for id := range c.agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// CappedPhases returns the agent's phase per class given its current
// phases: each class's phase in current, never above the catalog's phase for
// that class (the cap); a class missing from current, or with an unknown
// phase, keeps the catalog's phase.
func (ag *Agent) CappedPhases(current map[Class]Phase) map[Class]Phase {
	out := make(map[Class]Phase, len(ag.Phases))
	for cl, cp := range ag.Phases {
		out[cl] = cp
		if p, ok := current[cl]; ok && p.Valid() {
			out[cl] = p.Min(cp)
		}
	}
	return out
}

// Allows reports whether the agent may propose the action type at all.
func (ag *Agent) Allows(action string) bool { return slices.Contains(ag.Actions, action) }
