package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/vault"
)

// IdentityVerifier checks an agent's signature over a cycle request.
// *vault.Verifier implements it with the worker's Vault session.
type IdentityVerifier interface {
	Verify(ctx context.Context, agentID string, data []byte, signature string) (vault.Verification, error)
}

var _ IdentityVerifier = (*vault.Verifier)(nil)

// Reasons a request is refused as unverified (DESIGN invariant 9). They are
// the error details of a refusal and the metrics label "unverified: <reason>".
const (
	UnverifiedUnsigned     = "unsigned"
	UnverifiedMalformed    = "malformed signature"
	UnverifiedStale        = "stale"
	UnverifiedWorkflowID   = "workflow id mismatch"
	UnverifiedBadSignature = "bad signature"
	UnverifiedOtherAgent   = "signed by another agent's key"
	UnverifiedNoVerifier   = "no verifier"
	UnverifiedUnavailable  = "verification unavailable"
)

// VerifyInput is a request's canonical bytes and the signature to check.
// The signature is not a credential: it proves who signed these bytes and
// can sign nothing else, so it may sit in history.
type VerifyInput struct {
	AgentID string `json:"agent_id"`
	// Payload is contract.CanonicalRequest of the request.
	Payload    []byte `json:"payload"`
	Signature  string `json:"signature"`
	KeyVersion int    `json:"key_version"`
	// KeyHint is the key the request says signed it (optional). It is never
	// trusted: the signature is checked with AgentID's key; the hint only
	// names who signed when that check fails.
	KeyHint string `json:"key_hint,omitempty"`
}

// VerifyOutput is the verified identity, for the audit trail.
type VerifyOutput struct {
	// Signer is the verified identity, "agent:<id>".
	Signer     string `json:"signer"`
	Key        string `json:"key"`
	KeyVersion int    `json:"key_version"`
}

// Unverified is a refusal: a non-retryable InvalidRequest whose details
// hold the reason.
func Unverified(reason, detail string) error {
	return temporal.NewNonRetryableApplicationError("unverified: "+reason+": "+detail, contract.ErrTypeInvalidRequest, nil, reason)
}

// VerifyRequest proves a cycle request comes from the agent it names: the
// signature must verify with that agent's own Transit key. It runs before
// anything is leased or created. Without a verifier it refuses (fail closed).
func (a *Activities) VerifyRequest(ctx context.Context, in VerifyInput) (VerifyOutput, error) {
	if a.Identity == nil {
		return VerifyOutput{}, Unverified(UnverifiedNoVerifier, "the worker has no identity verifier (Vault session): nothing runs")
	}
	v, err := a.Identity.Verify(ctx, in.AgentID, in.Payload, in.Signature)
	switch {
	case errors.Is(err, vault.ErrBadSignature):
		if other := a.otherSigner(ctx, in); other != "" {
			return VerifyOutput{}, Unverified(UnverifiedOtherAgent,
				fmt.Sprintf("request claims agent %s but was signed by agent %s", in.AgentID, other))
		}
		return VerifyOutput{}, Unverified(UnverifiedBadSignature, fmt.Sprintf("not signed by agent %s: %v", in.AgentID, err))
	case err != nil:
		return VerifyOutput{}, fmt.Errorf("verify request: %w", err) // outage: retried
	}
	if in.KeyVersion != 0 && in.KeyVersion != v.KeyVersion {
		return VerifyOutput{}, Unverified(UnverifiedMalformed,
			fmt.Sprintf("key_version %d does not match the signature's version %d", in.KeyVersion, v.KeyVersion))
	}
	return VerifyOutput{Signer: "agent:" + in.AgentID, Key: v.Key, KeyVersion: v.KeyVersion}, nil
}

// otherSigner returns the agent whose key the hint names, if the signature
// verifies with it: evidence for the audit trail of who tried to act as
// someone else.
func (a *Activities) otherSigner(ctx context.Context, in VerifyInput) string {
	other, ok := strings.CutPrefix(in.KeyHint, vault.AgentKeyPrefix)
	if !ok || other == in.AgentID {
		return ""
	}
	if _, err := a.Identity.Verify(ctx, other, in.Payload, in.Signature); err != nil {
		return ""
	}
	return other
}
