package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// Defaults for agent tokens.
const (
	// DefaultAgentRole is the token role agent tokens are created against.
	DefaultAgentRole = "airlock-agent"
	// DefaultAgentPolicy is the policy an agent token carries: it may create
	// action tokens and renew itself, nothing else.
	DefaultAgentPolicy = "airlock-agent"
	// DefaultAgentRegistry is the KV v2 "<mount>/<path>" under which the
	// accessors of agent tokens are recorded.
	DefaultAgentRegistry = "secret/airlock/agent-tokens"
	// DefaultAgentPeriod is the period of agent tokens (EnsureAgentRole).
	// This process renews them every third of it; a token nobody renews any
	// more (its worker is gone) expires at most a period later. An action
	// token's TTL may not exceed it, so that an action token never dies of
	// its agent token's expiry.
	DefaultAgentPeriod = 2 * time.Hour
)

// AgentConfig configures AgentTokens.
type AgentConfig struct {
	// Role agent tokens are created against; it must make orphans (see
	// EnsureAgentRole) so that agent trees outlive the worker's own token.
	// Default: DefaultAgentRole.
	Role string
	// Policies of agent tokens; one must allow update on
	// auth/token/create/<the broker's TokenRole> and auth/token/renew-self.
	// Default: [DefaultAgentPolicy].
	Policies []string
	// Registry is the KV v2 "<mount>/<path>" where the accessor of every
	// agent token is recorded (never the token), so RevokeAgent, in any
	// worker, finds the agent tokens of every worker and of earlier runs.
	// Default: DefaultAgentRegistry.
	Registry string
	// RenewalTTL, when set and shorter than a request's TTL, is the TTL
	// action tokens start with and are renewed to; the request's TTL becomes
	// their explicit max. Such a token lives while the Job's activity renews
	// it (Broker.KeepAlive) and dies RenewalTTL after renewals stop — a lost
	// worker, a crashed activity — never later than the request's TTL.
	// Default: 0: TTL = explicit max = request TTL, as Broker.IssueToken.
	RenewalTTL time.Duration
	// OnError receives failures of the background renewal of agent tokens.
	// Default: logged with slog.Default().
	OnError func(agentID string, err error)
}

// AgentTokens holds one Vault token per agent and creates every action
// token of that agent as its child, so revoking the agent token — the kill
// switch — revokes all of the agent's action tokens and the dynamic secrets
// they leased, wherever they run.
//
// Agent tokens are periodic orphans created by the worker; their accessors
// are recorded in a KV v2 registry inside Vault (accessors allow lookup,
// renewal and revocation by a token permitted those, never use). A worker
// that restarts creates new agent tokens on demand and cannot use the old
// ones, which expire one period after their last renewal; RevokeAgent revokes
// them all the same, from the registry.
type AgentTokens struct {
	b        *Broker
	cfg      AgentConfig
	regMount string
	regPath  string

	ctx    context.Context // of the renewal goroutines
	cancel context.CancelFunc

	mu     sync.Mutex
	agents map[string]*agentToken
	closed bool
}

// agentToken is the token this process holds for one agent.
type agentToken struct {
	// mu serialises creating, refreshing and revoking the token.
	mu       sync.Mutex
	client   *api.Client // sends requests as the agent token; nil if none
	accessor string
	renewer  *Renewer

	// state is written by the renewal goroutine, which never takes mu.
	state  sync.Mutex
	expiry time.Time
	dead   bool
}

// NewAgentTokens validates cfg and returns an empty set of agent tokens. It
// does not contact Vault.
func NewAgentTokens(b *Broker, cfg AgentConfig) (*AgentTokens, error) {
	if b == nil {
		return nil, errors.New("agent tokens: nil broker")
	}
	if cfg.Role == "" {
		cfg.Role = DefaultAgentRole
	}
	if len(cfg.Policies) == 0 {
		cfg.Policies = []string{DefaultAgentPolicy}
	}
	if cfg.Registry == "" {
		cfg.Registry = DefaultAgentRegistry
	}
	if cfg.RenewalTTL < 0 {
		return nil, errors.New("agent tokens: negative renewal TTL")
	}
	if cfg.OnError == nil {
		cfg.OnError = func(agentID string, err error) {
			slog.Default().Warn("vault: renew agent token", "agent", agentID, "error", err)
		}
	}
	mount, path, ok := strings.Cut(strings.Trim(cfg.Registry, "/"), "/")
	if !ok || path == "" {
		return nil, fmt.Errorf("agent tokens: registry %q: want <kv-v2 mount>/<path>", cfg.Registry)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &AgentTokens{
		b: b, cfg: cfg, regMount: mount, regPath: path,
		ctx: ctx, cancel: cancel, agents: map[string]*agentToken{},
	}, nil
}

// ErrClosed is returned by AgentTokens after Close.
var ErrClosed = errors.New("agent tokens closed")

// ErrAgentTokenRevoked is returned when the agent token this process held
// was revoked under it (by RevokeAgent in another worker, or by hand). The
// next call creates a new agent token.
var ErrAgentTokenRevoked = errors.New("agent token revoked")

// IssueActionToken creates one action's token as a child of the agent's
// token (created first if this process holds none), against the broker's
// token role, with exactly the requested policies. It carries the metadata
// "agent" besides req.Metadata.
func (a *AgentTokens) IssueActionToken(ctx context.Context, agentID string, req TokenRequest) (Credential, error) {
	if err := validAgentID(agentID); err != nil {
		return Credential{}, fmt.Errorf("create action token: %w", err)
	}
	if len(req.Policies) == 0 {
		return Credential{}, errors.New("create action token: no policies requested")
	}
	if req.TTL <= 0 {
		return Credential{}, errors.New("create action token: TTL must be positive")
	}
	at, err := a.entry(agentID)
	if err != nil {
		return Credential{}, err
	}
	at.mu.Lock()
	defer at.mu.Unlock()
	if err := a.ensure(ctx, agentID, at, req.TTL); err != nil {
		return Credential{}, err
	}
	ttl := req.TTL
	if a.cfg.RenewalTTL > 0 && a.cfg.RenewalTTL < ttl {
		ttl = a.cfg.RenewalTTL
	}
	ttl = req.initialTTL(ttl)
	meta := maps.Clone(req.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	meta["agent"] = agentID
	role := a.b.role
	if req.ReadOnly {
		role = a.b.readRole
	}
	s, err := at.client.Auth().Token().CreateWithRoleWithContext(ctx, &api.TokenCreateRequest{
		Policies:        req.Policies,
		TTL:             ttl.String(),
		ExplicitMaxTTL:  req.TTL.String(),
		DisplayName:     req.DisplayName,
		Metadata:        meta,
		NoDefaultPolicy: true,
	}, role)
	if err != nil {
		if isForbidden(err) && a.revokedUnder(ctx, at) {
			// A later call starts afresh with a new agent token.
			a.drop(at)
			return Credential{}, fmt.Errorf("create action token: agent %s: %w", agentID, ErrAgentTokenRevoked)
		}
		return Credential{}, classify("create action token", err)
	}
	return credentialFrom(s, "create action token")
}

// RevokeAgent is the kill switch's Vault half: it revokes every agent token
// of agentID in the registry — this worker's, other workers', earlier
// runs' — and with each its whole tree: the agent's action tokens and the
// leases they took (database users are dropped). It returns the accessors
// it revoked. Revoking what is already gone succeeds, so it is idempotent;
// on error, what failed stays registered for a retry.
//
// It does not stop new issuance: callers first mark the agent killed (the
// Agent workflow refuses new cycles), since a concurrent IssueActionToken
// in another worker may create a fresh agent token after the registry was
// read.
func (a *AgentTokens) RevokeAgent(ctx context.Context, agentID string) ([]string, error) {
	if err := validAgentID(agentID); err != nil {
		return nil, fmt.Errorf("revoke agent: %w", err)
	}
	a.mu.Lock()
	at := a.agents[agentID]
	a.mu.Unlock()
	if at != nil {
		// Hold mu: no issuance in this process between listing and revoking.
		at.mu.Lock()
		defer at.mu.Unlock()
	}
	accessors, err := a.registered(ctx, agentID)
	if err != nil {
		return nil, fmt.Errorf("revoke agent %s: %w", agentID, err)
	}
	if at != nil && at.client != nil && !slices.Contains(accessors, at.accessor) {
		accessors = append(accessors, at.accessor)
	}
	var (
		revoked []string
		errs    []error
	)
	for _, acc := range accessors {
		if err := a.b.Revoke(ctx, acc); err != nil {
			errs = append(errs, err)
			continue
		}
		revoked = append(revoked, acc)
		if err := a.unregister(ctx, agentID, acc); err != nil {
			errs = append(errs, err)
		}
	}
	if at != nil && slices.Contains(revoked, at.accessor) {
		a.drop(at)
	}
	if err := errors.Join(errs...); err != nil {
		return revoked, fmt.Errorf("revoke agent %s: %w", agentID, err)
	}
	return revoked, nil
}

// Accessors lists the accessors of the agent's tokens recorded in the
// registry, live or not yet pruned.
func (a *AgentTokens) Accessors(ctx context.Context, agentID string) ([]string, error) {
	if err := validAgentID(agentID); err != nil {
		return nil, err
	}
	return a.registered(ctx, agentID)
}

// Close stops renewing agent tokens and waits for the goroutines. It
// revokes nothing: action tokens of running Jobs are children of these
// tokens, and another worker may continue those Jobs. Close is idempotent.
func (a *AgentTokens) Close() {
	a.mu.Lock()
	a.closed = true
	agents := slices.Collect(maps.Values(a.agents))
	a.mu.Unlock()
	a.cancel()
	for _, at := range agents {
		at.mu.Lock()
		if at.renewer != nil {
			at.renewer.Stop()
		}
		at.mu.Unlock()
	}
}

func (a *AgentTokens) entry(agentID string) (*agentToken, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	at := a.agents[agentID]
	if at == nil {
		at = &agentToken{}
		a.agents[agentID] = at
	}
	return at, nil
}

// ensure makes at hold a live agent token with at least need left to live,
// so the action token about to be created cannot outlive its parent.
// Callers hold at.mu.
func (a *AgentTokens) ensure(ctx context.Context, agentID string, at *agentToken, need time.Duration) error {
	if at.client != nil {
		at.state.Lock()
		left, dead := time.Until(at.expiry), at.dead
		at.state.Unlock()
		if !dead && left >= need+time.Second {
			return nil
		}
		if !dead {
			// A periodic token renews to a full period.
			s, err := at.client.Auth().Token().RenewSelfWithContext(ctx, 0)
			switch {
			case err == nil && s != nil && s.Auth != nil:
				ttl := time.Duration(s.Auth.LeaseDuration) * time.Second
				at.setExpiry(time.Now().Add(ttl))
				return checkPeriod(ttl, need)
			case err != nil && !isForbidden(err):
				return classify("renew agent token", err)
			}
		}
		a.drop(at)
	}
	ttl, err := a.create(ctx, agentID, at)
	if err != nil {
		return err
	}
	return checkPeriod(ttl, need)
}

func checkPeriod(period, need time.Duration) error {
	if period < need {
		return fmt.Errorf("create action token: TTL %s exceeds the agent token period %s", need, period)
	}
	return nil
}

// create makes a new agent token, records its accessor and starts renewing
// it. It returns the token's TTL, its period. Callers hold at.mu.
func (a *AgentTokens) create(ctx context.Context, agentID string, at *agentToken) (time.Duration, error) {
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	s, err := a.b.client.Auth().Token().CreateWithRoleWithContext(ctx, &api.TokenCreateRequest{
		// The role sets the period: a period in the request needs sudo.
		Policies:        a.cfg.Policies,
		DisplayName:     "agent-" + agentID,
		Metadata:        map[string]string{"agent": agentID, "airlock": "agent-token"},
		NoDefaultPolicy: true,
	}, a.cfg.Role)
	if err != nil {
		return 0, classify("create agent token", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return 0, errors.New("create agent token: empty response")
	}
	if !s.Auth.Orphan {
		// Not fatal, but the agent tree would die with the worker's token.
		slog.Default().Warn("vault: agent token is not an orphan; make the agent role orphan (EnsureAgentRole)", "role", a.cfg.Role)
	}
	accessor := s.Auth.Accessor
	if err := a.register(ctx, agentID, accessor); err != nil {
		// Fail closed: never hold an agent token RevokeAgent cannot find.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := a.b.Revoke(rctx, accessor); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return 0, fmt.Errorf("create agent token: %w", err)
	}
	c, err := a.b.client.Clone()
	if err != nil {
		return 0, fmt.Errorf("create agent token: %w", err)
	}
	c.SetToken(s.Auth.ClientToken)
	at.client, at.accessor = c, accessor
	at.state.Lock()
	at.expiry, at.dead = time.Now().Add(time.Duration(s.Auth.LeaseDuration)*time.Second), false
	at.state.Unlock()

	ref := TokenLease(accessor)
	at.renewer = startRenewer(a.ctx, RenewOptions{
		OnRenew: func(_ LeaseRef, ttl time.Duration) { at.setExpiry(time.Now().Add(ttl)) },
		OnError: func(_ LeaseRef, err error) {
			if !errors.Is(err, ErrUnavailable) {
				at.state.Lock()
				at.dead = true
				at.state.Unlock()
			}
			a.cfg.OnError(agentID, err)
		},
	}, []LeaseRef{ref}, func(ctx context.Context, _ LeaseRef) (time.Duration, error) {
		s, err := c.Auth().Token().RenewSelfWithContext(ctx, 0)
		if err != nil {
			if isForbidden(err) {
				return 0, fmt.Errorf("renew agent token %s: %w", accessor, ErrAgentTokenRevoked)
			}
			return 0, classify("renew agent token", err)
		}
		if s == nil || s.Auth == nil {
			return 0, errors.New("renew agent token: empty response")
		}
		return time.Duration(s.Auth.LeaseDuration) * time.Second, nil
	})
	a.prune(ctx, agentID, accessor)
	return time.Duration(s.Auth.LeaseDuration) * time.Second, nil
}

// revokedUnder tells a revoked agent token from one whose policy does not
// allow a request: only the former fails its own lookup-self. Callers hold
// at.mu.
func (a *AgentTokens) revokedUnder(ctx context.Context, at *agentToken) bool {
	_, err := at.client.Auth().Token().LookupSelfWithContext(ctx)
	return isForbidden(err)
}

func (at *agentToken) setExpiry(t time.Time) {
	at.state.Lock()
	at.expiry = t
	at.state.Unlock()
}

// drop forgets the held token (without revoking it). Callers hold at.mu.
func (a *AgentTokens) drop(at *agentToken) {
	if at.renewer != nil {
		at.renewer.Stop()
	}
	at.client, at.accessor, at.renewer = nil, "", nil
}

// Registry: one KV v2 secret per agent token at
// <mount>/data/<path>/<agent>/<accessor>, holding only metadata.

func (a *AgentTokens) register(ctx context.Context, agentID, accessor string) error {
	_, err := a.b.client.KVv2(a.regMount).Put(ctx, a.regPath+"/"+agentID+"/"+accessor, map[string]any{
		"agent":      agentID,
		"accessor":   accessor,
		"created_at": time.Now().UTC().Format(time.RFC3339),
	})
	if err != nil {
		return classify("register agent token", err)
	}
	return nil
}

func (a *AgentTokens) unregister(ctx context.Context, agentID, accessor string) error {
	err := a.b.client.KVv2(a.regMount).DeleteMetadata(ctx, a.regPath+"/"+agentID+"/"+accessor)
	if err != nil {
		return classify("unregister agent token", err)
	}
	return nil
}

func (a *AgentTokens) registered(ctx context.Context, agentID string) ([]string, error) {
	s, err := a.b.client.Logical().ListWithContext(ctx, a.regMount+"/metadata/"+a.regPath+"/"+agentID)
	if err != nil {
		return nil, classify("list agent tokens", err)
	}
	if s == nil {
		return nil, nil
	}
	keys, _ := s.Data["keys"].([]any)
	var out []string
	for _, k := range keys {
		if str, ok := k.(string); ok && !strings.HasSuffix(str, "/") {
			out = append(out, str)
		}
	}
	slices.Sort(out)
	return out, nil
}

// prune removes registry entries of the agent's tokens that no longer exist
// (expired after a worker restart). Best effort: failures are ignored.
func (a *AgentTokens) prune(ctx context.Context, agentID, keep string) {
	accessors, err := a.registered(ctx, agentID)
	if err != nil {
		return
	}
	for _, acc := range accessors {
		if acc == keep {
			continue
		}
		if _, err := a.b.Lookup(ctx, acc); errors.Is(err, ErrNotFound) {
			_ = a.unregister(ctx, agentID, acc)
		}
	}
}

// validAgentID keeps agent ids usable as one path segment.
func validAgentID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\ \t\n") {
		return fmt.Errorf("invalid agent id %q", id)
	}
	return nil
}

func isForbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// AgentRoleConfig describes the token role and policy of agent tokens.
type AgentRoleConfig struct {
	// Role name. Default: DefaultAgentRole.
	Role string
	// Policy name. Default: DefaultAgentPolicy.
	Policy string
	// Period of agent tokens. Default: DefaultAgentPeriod.
	Period time.Duration
}

// AgentPolicyHCL is the policy of agent tokens: create action tokens
// against actionRole, renew and look up themselves. Nothing else — an agent
// token is never handed to an action.
func AgentPolicyHCL(actionRoles ...string) string {
	var b strings.Builder
	b.WriteString("# Airlock agent tokens: parents of the agent's action tokens.\n")
	for _, r := range actionRoles {
		fmt.Fprintf(&b, "path \"auth/token/create/%s\" {\n  capabilities = [\"update\"]\n}\n", r)
	}
	b.WriteString(`path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
`)
	return b.String()
}

// EnsureAgentRole writes the agent policy and the agent token role: orphan
// (agent trees must not die with the worker's own login token), periodic,
// allowed only the agent policy. Like EnsureRole it is a setup helper; the
// worker's token needs sudo-free update on auth/token/roles and sys/policies.
func (b *Broker) EnsureAgentRole(ctx context.Context, rc AgentRoleConfig) error {
	if rc.Role == "" {
		rc.Role = DefaultAgentRole
	}
	if rc.Policy == "" {
		rc.Policy = DefaultAgentPolicy
	}
	if rc.Period == 0 {
		rc.Period = DefaultAgentPeriod
	}
	if err := b.PutPolicy(ctx, rc.Policy, AgentPolicyHCL(b.role, b.readRole)); err != nil {
		return err
	}
	_, err := b.client.Logical().WriteWithContext(ctx, "auth/token/roles/"+rc.Role, map[string]any{
		"allowed_policies":    rc.Policy,
		"disallowed_policies": "root",
		"orphan":              true,
		"renewable":           true,
		"token_period":        int(rc.Period.Seconds()),
		"token_type":          "service",
	})
	if err != nil {
		return classify("write agent token role", err)
	}
	return nil
}
