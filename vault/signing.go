package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/airlockhq/airlock/contract"
)

// Verified agent identity (DESIGN invariant 9). Every agent owns a Transit
// signing key, airlock-agent-<id> (ed25519, not exportable). The private key
// never leaves Vault; the only way to sign with it is a token carrying the
// agent's signer policy, which the agent obtains by logging in to Vault as
// itself (AppRole or Kubernetes auth). The worker may only verify.

// AgentKeyPrefix starts the name of every agent's Transit signing key.
const AgentKeyPrefix = "airlock-agent-"

// DefaultAgentAppRoleMount is where EnsureAgentIdentity enables AppRole.
const DefaultAgentAppRoleMount = "approle"

// ErrBadSignature means a signature does not verify with the agent's key:
// made with another key, over other bytes, or not a signature at all.
// Retrying cannot change that.
var ErrBadSignature = errors.New("signature does not verify")

var agentIDRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$`)

// AgentKeyName is the Transit key agentID signs its cycle requests with.
func AgentKeyName(agentID string) string { return AgentKeyPrefix + agentID }

// AgentSignerPolicyName names the Vault policy of agentID's own identity.
func AgentSignerPolicyName(agentID string) string { return "airlock-signer-" + agentID }

// AgentSignerPolicyHCL is the policy an agent's own Vault identity carries:
// sign with its own key and nothing else of Airlock's. In particular it can
// neither sign as another agent, nor read or export any key.
func AgentSignerPolicyHCL(agentID string) string {
	return fmt.Sprintf(`# Airlock agent %[1]s: sign its own cycle requests, nothing else.
path "%[2]s/sign/%[3]s" {
  capabilities = ["update"]
}
`, agentID, DefaultTransitMount, AgentKeyName(agentID))
}

func checkAgentID(agentID string) error {
	if !agentIDRE.MatchString(agentID) {
		return fmt.Errorf("invalid agent id %q", agentID)
	}
	return nil
}

// EnsureAgentKey creates agentID's ed25519 signing key (and mounts Transit
// if nothing is mounted at DefaultTransitMount), and checks that an
// existing key is an ed25519 key that cannot be exported. For dev and
// tests; production keys come from Terraform or deploy/vault.
func (b *Broker) EnsureAgentKey(ctx context.Context, agentID string) error {
	if err := checkAgentID(agentID); err != nil {
		return fmt.Errorf("ensure agent key: %w", err)
	}
	t := &Transit{client: b.client, mount: DefaultTransitMount, key: AgentKeyName(agentID)}
	if err := t.EnsureMount(ctx); err != nil {
		return err
	}
	s, err := b.client.Logical().ReadWithContext(ctx, t.path("keys"))
	if err != nil {
		return classify("read agent key", err)
	}
	if s == nil || s.Data == nil {
		if _, err := b.client.Logical().WriteWithContext(ctx, t.path("keys"), map[string]any{"type": "ed25519"}); err != nil {
			return classify("create agent key", err)
		}
		return nil
	}
	if typ, _ := s.Data["type"].(string); typ != "ed25519" {
		return fmt.Errorf("agent key %s: type %q, want ed25519", t.KeyID(), typ)
	}
	if exp, _ := s.Data["exportable"].(bool); exp {
		return fmt.Errorf("agent key %s is exportable: its private key could sign outside Vault", t.KeyID())
	}
	return nil
}

// AgentIdentity is how an agent logs in to Vault as itself (dev and tests).
// It holds no secret: the role id names the role, the secret id is issued
// separately by AgentSecretID.
type AgentIdentity struct {
	AgentID      string `json:"agent_id"`
	Key          string `json:"key"`    // Transit key, "transit/airlock-agent-<id>"
	Policy       string `json:"policy"` // AgentSignerPolicyName
	AppRoleMount string `json:"approle_mount"`
	AppRole      string `json:"approle"`
	RoleID       string `json:"role_id"`
}

// EnsureAgentIdentity creates agentID's signing key, its signer policy and
// an AppRole role whose tokens carry only that policy (and Vault's default
// one), enabling AppRole at DefaultAgentAppRoleMount if needed. It needs
// broad rights (sys/auth, sys/policies, auth/approle/role): for dev and
// tests; production identities come from Terraform or deploy/vault, with
// Kubernetes auth bound to the agent's service account as the usual login.
func (b *Broker) EnsureAgentIdentity(ctx context.Context, agentID string) (AgentIdentity, error) {
	if err := b.EnsureAgentKey(ctx, agentID); err != nil {
		return AgentIdentity{}, err
	}
	id := AgentIdentity{
		AgentID: agentID, Key: DefaultTransitMount + "/" + AgentKeyName(agentID), Policy: AgentSignerPolicyName(agentID),
		AppRoleMount: DefaultAgentAppRoleMount, AppRole: AgentKeyName(agentID),
	}
	if err := b.PutPolicy(ctx, id.Policy, AgentSignerPolicyHCL(agentID)); err != nil {
		return AgentIdentity{}, err
	}
	auths, err := b.client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return AgentIdentity{}, classify("list auth methods", err)
	}
	if m, ok := auths[id.AppRoleMount+"/"]; !ok {
		if err := b.client.Sys().EnableAuthWithOptionsWithContext(ctx, id.AppRoleMount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
			return AgentIdentity{}, classify("enable approle", err)
		}
	} else if m.Type != "approle" {
		return AgentIdentity{}, fmt.Errorf("enable approle: %s/ is a %s auth method", id.AppRoleMount, m.Type)
	}
	role := "auth/" + id.AppRoleMount + "/role/" + id.AppRole
	if _, err := b.client.Logical().WriteWithContext(ctx, role, map[string]any{
		"token_policies": id.Policy,
		"token_ttl":      "1h",
		"token_max_ttl":  "24h",
		"token_type":     "service",
		"secret_id_ttl":  "24h",
	}); err != nil {
		return AgentIdentity{}, classify("write agent approle", err)
	}
	s, err := b.client.Logical().ReadWithContext(ctx, role+"/role-id")
	if err != nil {
		return AgentIdentity{}, classify("read agent role id", err)
	}
	if s == nil || s.Data == nil {
		return AgentIdentity{}, errors.New("read agent role id: empty response")
	}
	id.RoleID, _ = s.Data["role_id"].(string)
	return id, nil
}

// SecretID is an AppRole secret id: a login credential for one agent. Its
// value is hidden from fmt, slog and JSON; hand it to the agent only.
type SecretID struct {
	Accessor string `json:"accessor"`
	value    string
}

// Value returns the secret id, for the agent's login only.
func (s SecretID) Value() string { return s.value }

func (s SecretID) String() string { return "secret-id(accessor=" + s.Accessor + ")" }

// GoString hides the value from %#v too.
func (s SecretID) GoString() string { return s.String() }

// LogValue keeps the value out of slog output.
func (s SecretID) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON encodes only the accessor.
func (s SecretID) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"accessor": s.Accessor})
}

// AgentSecretID issues a new secret id for the AppRole EnsureAgentIdentity
// created for agentID.
func (b *Broker) AgentSecretID(ctx context.Context, agentID string) (SecretID, error) {
	if err := checkAgentID(agentID); err != nil {
		return SecretID{}, fmt.Errorf("agent secret id: %w", err)
	}
	s, err := b.client.Logical().WriteWithContext(ctx, "auth/"+DefaultAgentAppRoleMount+"/role/"+AgentKeyName(agentID)+"/secret-id", nil)
	if err != nil {
		return SecretID{}, classify("agent secret id", err)
	}
	if s == nil || s.Data == nil {
		return SecretID{}, errors.New("agent secret id: empty response")
	}
	v, _ := s.Data["secret_id"].(string)
	acc, _ := s.Data["secret_id_accessor"].(string)
	if v == "" {
		return SecretID{}, errors.New("agent secret id: response has no secret id")
	}
	return SecretID{Accessor: acc, value: v}, nil
}

// Signer signs bytes as an agent with its Transit key. Which agents it can
// sign as is decided by Vault: an agent's own token reaches only its own key.
type Signer struct {
	client *api.Client
	mount  string
}

// NewSigner signs with the token in cfg (Default: $VAULT_TOKEN) at
// cfg.Address (Default: $VAULT_ADDR). It does not contact the server.
func NewSigner(cfg Config) (*Signer, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Signer{client: c, mount: DefaultTransitMount}, nil
}

// Signer signs with the broker's token: use it on the Session an agent got
// from Login (AppRole or Kubernetes), which keeps that token alive.
func (b *Broker) Signer() *Signer { return &Signer{client: b.client, mount: DefaultTransitMount} }

// Sign signs data with agentID's key (transit/sign/airlock-agent-<id>).
func (s *Signer) Sign(ctx context.Context, agentID string, data []byte) (contract.Signature, error) {
	op := "sign as agent " + agentID
	if err := checkAgentID(agentID); err != nil {
		return contract.Signature{}, fmt.Errorf("%s: %w", op, err)
	}
	key := AgentKeyName(agentID)
	r, err := s.client.Logical().WriteWithContext(ctx, s.mount+"/sign/"+key, map[string]any{
		"input": base64.StdEncoding.EncodeToString(data),
	})
	if err != nil {
		return contract.Signature{}, classify(op, err)
	}
	if r == nil || r.Data == nil {
		return contract.Signature{}, errors.New(op + ": empty response")
	}
	sig, _ := r.Data["signature"].(string)
	v, err := signatureVersion(sig)
	if err != nil {
		return contract.Signature{}, fmt.Errorf("%s: %w", op, err)
	}
	return contract.Signature{Key: key, KeyVersion: v, Value: sig}, nil
}

// Verification is what a valid signature proves: which key (and version)
// made it.
type Verification struct {
	// Key is the Transit key, "transit/airlock-agent-<id>".
	Key        string `json:"key"`
	KeyVersion int    `json:"key_version"`
}

// Verifier checks agents' signatures. The worker holds one: its policy has
// update on transit/verify/airlock-agent-* and no sign path.
type Verifier struct {
	client *api.Client
	mount  string
}

// NewVerifier verifies with the broker's token (the worker's session).
func NewVerifier(b *Broker) *Verifier { return &Verifier{client: b.client, mount: DefaultTransitMount} }

// Verify checks that signature was made over data by agentID's key
// (transit/verify/airlock-agent-<id>) and returns the key version that made
// it. A signature that does not verify (another key, other bytes, garbage)
// is ErrBadSignature; Vault outages are ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, agentID string, data []byte, signature string) (Verification, error) {
	op := "verify signature of agent " + agentID
	if err := checkAgentID(agentID); err != nil {
		// No key can exist for it: a permanent refusal, not an outage.
		return Verification{}, fmt.Errorf("%s: %w: %v", op, ErrBadSignature, err)
	}
	version, err := signatureVersion(signature)
	if err != nil {
		return Verification{}, fmt.Errorf("%s: %w: %v", op, ErrBadSignature, err)
	}
	key := AgentKeyName(agentID)
	r, err := v.client.Logical().WriteWithContext(ctx, v.mount+"/verify/"+key, map[string]any{
		"input":     base64.StdEncoding.EncodeToString(data),
		"signature": signature,
	})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
			// Unknown key, unknown key version, malformed signature.
			return Verification{}, fmt.Errorf("%s: %w: %s", op, ErrBadSignature, strings.Join(re.Errors, "; "))
		}
		return Verification{}, classify(op, err)
	}
	if r == nil || r.Data == nil {
		return Verification{}, errors.New(op + ": empty response")
	}
	if valid, _ := r.Data["valid"].(bool); !valid {
		return Verification{}, fmt.Errorf("%s: %w with %s/%s", op, ErrBadSignature, v.mount, key)
	}
	return Verification{Key: v.mount + "/" + key, KeyVersion: version}, nil
}

// signatureVersion reads N from "vault:v<N>:<base64>".
func signatureVersion(sig string) (int, error) {
	rest, ok := strings.CutPrefix(sig, "vault:v")
	if !ok {
		return 0, errors.New("not a Vault Transit signature")
	}
	n, body, ok := strings.Cut(rest, ":")
	v, err := strconv.Atoi(n)
	if !ok || err != nil || v < 1 || body == "" {
		return 0, errors.New("not a Vault Transit signature")
	}
	return v, nil
}
