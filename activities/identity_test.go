package activities_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/vault"
)

// keyring verifies "sig-by-<agent>" as agent's signature over anything.
type keyring struct{ down bool }

func (k keyring) Verify(_ context.Context, agent string, _ []byte, sig string) (vault.Verification, error) {
	if k.down {
		return vault.Verification{}, fmt.Errorf("verify: %w", vault.ErrUnavailable)
	}
	if sig != "sig-by-"+agent {
		return vault.Verification{}, fmt.Errorf("verify: %w", vault.ErrBadSignature)
	}
	return vault.Verification{Key: "transit/" + vault.AgentKeyName(agent), KeyVersion: 2}, nil
}

func TestVerifyRequest(t *testing.T) {
	tests := map[string]struct {
		identity activities.IdentityVerifier
		in       activities.VerifyInput
		want     activities.VerifyOutput
		reason   string // "" = verified; "retry" = a retryable error
		detail   string
	}{
		"own signature": {
			identity: keyring{}, in: activities.VerifyInput{AgentID: "b", Signature: "sig-by-b", KeyVersion: 2},
			want: activities.VerifyOutput{Signer: "agent:b", Key: "transit/airlock-agent-b", KeyVersion: 2},
		},
		"another agent's signature, named by the hint": {
			identity: keyring{}, in: activities.VerifyInput{AgentID: "b", Signature: "sig-by-a", KeyHint: "airlock-agent-a"},
			reason: activities.UnverifiedOtherAgent, detail: "request claims agent b but was signed by agent a",
		},
		"another agent's signature, hint lies": {
			identity: keyring{}, in: activities.VerifyInput{AgentID: "b", Signature: "sig-by-a", KeyHint: "airlock-agent-c"},
			reason: activities.UnverifiedBadSignature, detail: "not signed by agent b",
		},
		"another agent's signature, no hint": {
			identity: keyring{}, in: activities.VerifyInput{AgentID: "b", Signature: "sig-by-a"},
			reason: activities.UnverifiedBadSignature,
		},
		"key version does not match": {
			identity: keyring{}, in: activities.VerifyInput{AgentID: "b", Signature: "sig-by-b", KeyVersion: 1},
			reason: activities.UnverifiedMalformed, detail: "key_version 1",
		},
		"no verifier: fail closed": {
			in:     activities.VerifyInput{AgentID: "b", Signature: "sig-by-b"},
			reason: activities.UnverifiedNoVerifier,
		},
		"vault down: retried": {
			identity: keyring{down: true}, in: activities.VerifyInput{AgentID: "b", Signature: "sig-by-b"},
			reason: "retry",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := &activities.Activities{Identity: tc.identity}
			got, err := a.VerifyRequest(context.Background(), tc.in)
			if tc.reason == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.want, got)
				return
			}
			require.Error(t, err)
			var appErr *temporal.ApplicationError
			if tc.reason == "retry" {
				assert.False(t, errors.As(err, &appErr), "an outage is retried: %v", err)
				return
			}
			require.True(t, errors.As(err, &appErr), "got %v", err)
			assert.True(t, appErr.NonRetryable())
			assert.Equal(t, contract.ErrTypeInvalidRequest, appErr.Type())
			var reason string
			require.NoError(t, appErr.Details(&reason))
			assert.Equal(t, tc.reason, reason)
			assert.Contains(t, appErr.Message(), "unverified: "+tc.reason)
			assert.Contains(t, appErr.Message(), tc.detail)
		})
	}
}
