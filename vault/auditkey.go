package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"
)

// AuditKeyName is the Transit key (ed25519, not exportable) that signs the
// head of every cycle's hash-chained audit trail. An unkeyed SHA-256 chain
// can be recomputed by whoever rewrites it; a signature from a key that
// never leaves Vault cannot.
const AuditKeyName = "airlock-audit"

// AuditSigner signs and verifies audit-trail heads with AuditKeyName. The
// worker signs (transit/sign/airlock-audit); auditors only verify
// (AuditorPolicyHCL).
type AuditSigner struct {
	client *api.Client
	mount  string
	key    string
}

// NewAuditSigner signs with the broker's token (the worker's session).
func NewAuditSigner(b *Broker) *AuditSigner {
	return &AuditSigner{client: b.client, mount: DefaultTransitMount, key: AuditKeyName}
}

// NewAuditVerifier verifies with the token in cfg (Default: $VAULT_TOKEN)
// at cfg.Address (Default: $VAULT_ADDR). It does not contact the server.
func NewAuditVerifier(cfg Config) (*AuditSigner, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	return &AuditSigner{client: c, mount: DefaultTransitMount, key: AuditKeyName}, nil
}

// Key is the key's name without its mount, "airlock-audit".
func (s *AuditSigner) Key() string { return s.key }

// EnsureAuditKey creates the audit signing key (and mounts Transit if
// nothing is mounted there), and checks an existing one is an ed25519 key
// that cannot be exported. For dev and tests; production keys come from
// Terraform or deploy/vault.
func (b *Broker) EnsureAuditKey(ctx context.Context) error {
	t := &Transit{client: b.client, mount: DefaultTransitMount, key: AuditKeyName}
	if err := t.EnsureMount(ctx); err != nil {
		return err
	}
	s, err := b.client.Logical().ReadWithContext(ctx, t.path("keys"))
	if err != nil {
		return classify("read audit key", err)
	}
	if s == nil || s.Data == nil {
		if _, err := b.client.Logical().WriteWithContext(ctx, t.path("keys"), map[string]any{"type": "ed25519"}); err != nil {
			return classify("create audit key", err)
		}
		return nil
	}
	if typ, _ := s.Data["type"].(string); typ != "ed25519" {
		return fmt.Errorf("audit key %s: type %q, want ed25519", t.KeyID(), typ)
	}
	if exp, _ := s.Data["exportable"].(bool); exp {
		return fmt.Errorf("audit key %s is exportable: its private key could sign outside Vault", t.KeyID())
	}
	return nil
}

// Sign signs msg and returns the signature ("vault:v<N>:…") and N.
func (s *AuditSigner) Sign(ctx context.Context, msg []byte) (signature string, version int, err error) {
	r, err := s.client.Logical().WriteWithContext(ctx, s.mount+"/sign/"+s.key, map[string]any{
		"input": base64.StdEncoding.EncodeToString(msg),
	})
	if err != nil {
		return "", 0, classify("sign audit head", err)
	}
	if r == nil || r.Data == nil {
		return "", 0, errors.New("sign audit head: empty response")
	}
	sig, _ := r.Data["signature"].(string)
	if version, err = signatureVersion(sig); err != nil {
		return "", 0, fmt.Errorf("sign audit head: %w", err)
	}
	return sig, version, nil
}

// Verify checks signature over msg with the audit key and returns the key
// version that made it. A signature that does not verify is
// ErrBadSignature; Vault outages are ErrUnavailable.
func (s *AuditSigner) Verify(ctx context.Context, msg []byte, signature string) (version int, err error) {
	const op = "verify audit head signature"
	if version, err = signatureVersion(signature); err != nil {
		return 0, fmt.Errorf("%s: %w: %v", op, ErrBadSignature, err)
	}
	r, err := s.client.Logical().WriteWithContext(ctx, s.mount+"/verify/"+s.key, map[string]any{
		"input":     base64.StdEncoding.EncodeToString(msg),
		"signature": signature,
	})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
			return 0, fmt.Errorf("%s: %w: %s", op, ErrBadSignature, strings.Join(re.Errors, "; "))
		}
		return 0, classify(op, err)
	}
	if r == nil || r.Data == nil {
		return 0, errors.New(op + ": empty response")
	}
	if valid, _ := r.Data["valid"].(bool); !valid {
		return 0, fmt.Errorf("%s: %w with %s/%s", op, ErrBadSignature, s.mount, s.key)
	}
	return version, nil
}

// AuditorPolicyHCL is the policy of whoever runs `airlock cycle audit`:
// verify audit-trail signatures, nothing else.
func AuditorPolicyHCL() string {
	return fmt.Sprintf(`# Airlock auditor: verify cycle audit-trail signatures, never sign.
path "%s/verify/%s" {
  capabilities = ["update"]
}
`, DefaultTransitMount, AuditKeyName)
}
