// Package vault is Airlock's credential broker: it leases one short-lived
// Vault token per action and revokes it when the action ends. Callers get a
// Lease (accessor, TTL, policies) to record; the token value itself only
// leaves this package through Credential.Value, to be written straight into
// the action's Kubernetes Secret.
package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// Config configures a Broker.
type Config struct {
	// Address of the Vault server. Default: $VAULT_ADDR.
	Address string
	// Token the worker authenticates with. Default: $VAULT_TOKEN.
	Token string
	// TokenRole is the token role action tokens are created against; its
	// allowed_policies bound what any action can ever get. Default: airlock-action.
	TokenRole string
	// ReadTokenRole is the role for read actions (and everything in shadow
	// mode): its allowed_policies hold only read-only policies, so a
	// misconfigured catalog still cannot hand a read action write access.
	// Default: airlock-action-read.
	ReadTokenRole string
	// Timeout of a single Vault request. Default: 10s.
	Timeout time.Duration
}

// Default token roles action tokens are created with.
const (
	DefaultTokenRole     = "airlock-action"
	DefaultReadTokenRole = "airlock-action-read"
)

// Broker leases and revokes per-action credentials.
type Broker struct {
	client   *api.Client
	role     string
	readRole string
}

// NewBroker connects to Vault. It does not contact the server.
func NewBroker(cfg Config) (*Broker, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	role, readRole := cfg.TokenRole, cfg.ReadTokenRole
	if role == "" {
		role = DefaultTokenRole
	}
	if readRole == "" {
		readRole = DefaultReadTokenRole
	}
	return &Broker{client: c, role: role, readRole: readRole}, nil
}

// newClient builds a Vault client: defaults from the environment, 10s
// request timeout, no client-side retries (the workflow retries, with
// backoff, and records it).
func newClient(cfg Config) (*api.Client, error) {
	vc := api.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault config: %w", vc.Error)
	}
	if cfg.Address != "" {
		vc.Address = cfg.Address
	}
	vc.Timeout = cfg.Timeout
	if vc.Timeout == 0 {
		vc.Timeout = 10 * time.Second
	}
	// Callers (the workflow, the SDK's workflow-task retries) retry.
	vc.MaxRetries = 0
	c, err := api.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	if cfg.Token != "" {
		c.SetToken(cfg.Token)
	}
	if c.Token() == "" {
		return nil, errors.New("vault client: no token (set VAULT_TOKEN)")
	}
	return c, nil
}

// Lease describes an issued credential without revealing it.
type Lease struct {
	Accessor string        `json:"accessor"`
	TTL      time.Duration `json:"ttl"`
	Policies []string      `json:"policies"`
	// MaxTTL is the token's explicit max TTL (set by Lookup), the bound
	// renewal can never pass: what it was issued with. (A token role's
	// token_explicit_max_ttl is not recorded on the token; it may cap
	// renewals earlier.)
	MaxTTL time.Duration `json:"max_ttl,omitempty"`
	// IssuedAt is when the token was created (set by Lookup).
	IssuedAt time.Time `json:"issued_at,omitzero"`
}

// MaxExpiry is the time no renewal can take the token past (IssuedAt +
// MaxTTL), or zero when it has no explicit max TTL (or it is unknown).
func (l Lease) MaxExpiry() time.Time {
	if l.MaxTTL <= 0 || l.IssuedAt.IsZero() {
		return time.Time{}
	}
	return l.IssuedAt.Add(l.MaxTTL)
}

// Credential is an issued token. Its value is hidden from fmt, slog and JSON
// so it cannot leak into logs or workflow history by accident.
type Credential struct {
	Lease
	token string
}

// Value returns the secret token, for writing into the action's Secret only.
func (c Credential) Value() string { return c.token }

func (c Credential) String() string { return "credential(accessor=" + c.Accessor + ")" }

// GoString hides the value from %#v too.
func (c Credential) GoString() string { return c.String() }

// LogValue keeps the value out of slog output.
func (c Credential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("accessor", c.Accessor), slog.Duration("ttl", c.TTL))
}

// MarshalJSON encodes only the lease.
func (c Credential) MarshalJSON() ([]byte, error) { return jsonLease(c.Lease) }

// TokenRequest asks for one action's token.
type TokenRequest struct {
	Policies    []string
	TTL         time.Duration
	DisplayName string
	Metadata    map[string]string
	// ReadOnly issues the token under the read-only role.
	ReadOnly bool
	// InitialTTL, when set and shorter, is the TTL the token is issued with;
	// TTL stays its explicit max. Staging issues tokens on this short fuse
	// and renews them only once their accessor is recorded, so a worker that
	// dies in between leaves nothing that lives longer than the fuse.
	InitialTTL time.Duration
}

// initialTTL is the TTL a token starts with: InitialTTL when set and
// shorter than ttl.
func (r TokenRequest) initialTTL(ttl time.Duration) time.Duration {
	if r.InitialTTL > 0 && r.InitialTTL < ttl {
		return r.InitialTTL
	}
	return ttl
}

// ErrUnavailable marks Vault outages and 5xx answers: the caller retries.
var ErrUnavailable = errors.New("vault unavailable")

// IssueToken creates a child token with exactly the requested policies (no
// default policy) and the given TTL, non-renewable beyond the role's max.
func (b *Broker) IssueToken(ctx context.Context, req TokenRequest) (Credential, error) {
	if len(req.Policies) == 0 {
		return Credential{}, errors.New("create token: no policies requested")
	}
	if req.TTL <= 0 {
		return Credential{}, errors.New("create token: TTL must be positive")
	}
	role := b.role
	if req.ReadOnly {
		role = b.readRole
	}
	s, err := b.client.Auth().Token().CreateWithRoleWithContext(ctx, &api.TokenCreateRequest{
		Policies:        req.Policies,
		TTL:             req.initialTTL(req.TTL).String(),
		ExplicitMaxTTL:  req.TTL.String(),
		DisplayName:     req.DisplayName,
		Metadata:        req.Metadata,
		NoDefaultPolicy: true,
	}, role)
	if err != nil {
		return Credential{}, classify("create token", err)
	}
	return credentialFrom(s, "create token")
}

// credentialFrom turns a token-create response into a Credential.
func credentialFrom(s *api.Secret, op string) (Credential, error) {
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return Credential{}, errors.New(op + ": empty response")
	}
	return Credential{
		Lease: Lease{
			Accessor: s.Auth.Accessor,
			TTL:      time.Duration(s.Auth.LeaseDuration) * time.Second,
			Policies: slices.Clone(s.Auth.TokenPolicies),
		},
		token: s.Auth.ClientToken,
	}, nil
}

// Revoke revokes a token and its children by accessor. Revoking a token that
// is already gone (revoked or expired) succeeds: the goal holds.
func (b *Broker) Revoke(ctx context.Context, accessor string) error {
	if accessor == "" {
		return errors.New("revoke token: empty accessor")
	}
	err := b.client.Auth().Token().RevokeAccessorWithContext(ctx, accessor)
	if err != nil && isInvalidAccessor(err) {
		return nil
	}
	if err != nil {
		return classify("revoke token", err)
	}
	return nil
}

// ErrNotFound is returned by Lookup for a token that no longer exists.
var ErrNotFound = errors.New("token not found")

// Lookup returns the live lease of an accessor, or ErrNotFound once revoked
// or expired.
func (b *Broker) Lookup(ctx context.Context, accessor string) (Lease, error) {
	s, err := b.client.Auth().Token().LookupAccessorWithContext(ctx, accessor)
	if err != nil {
		if isInvalidAccessor(err) {
			return Lease{}, ErrNotFound
		}
		return Lease{}, classify("lookup token", err)
	}
	ttl, _ := s.TokenTTL()
	pols, _ := s.TokenPolicies()
	var (
		maxTTL time.Duration
		issued time.Time
	)
	if n, ok := s.Data["explicit_max_ttl"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			maxTTL = time.Duration(v) * time.Second
		}
	}
	if n, ok := s.Data["creation_time"].(json.Number); ok {
		if v, err := n.Int64(); err == nil {
			issued = time.Unix(v, 0)
		}
	}
	return Lease{Accessor: accessor, TTL: ttl, Policies: pols, MaxTTL: maxTTL, IssuedAt: issued}, nil
}

func isInvalidAccessor(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.Join(re.Errors, " "), "invalid accessor")
}

// classify wraps err with context and marks outages so callers can retry.
// Vault error bodies never contain the token we sent, only messages.
func classify(op string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		if re.StatusCode >= 500 {
			return fmt.Errorf("%s: %w: HTTP %d: %s", op, ErrUnavailable, re.StatusCode, strings.Join(re.Errors, "; "))
		}
		return fmt.Errorf("%s: HTTP %d: %s", op, re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
}
