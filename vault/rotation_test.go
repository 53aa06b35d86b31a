package vault_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/vault"
)

// Lookup tells the hard end of a token: what it was issued with. A token
// role's token_explicit_max_ttl (1h here) is not visible on the token — it
// caps renewals — so the worker's CredentialMaxTTL must not exceed it
// (activities.DefaultCredentialMaxTTL stays below the default role's 2h).
func TestLookupTellsTheHardEnd(t *testing.T) {
	s := setupBroker(t, `path "secret/*" { capabilities = ["read"] }`)
	tests := map[string]struct {
		ask, want time.Duration
	}{
		"below the role's max": {ask: 10 * time.Minute, want: 10 * time.Minute},
		"above the role's max": {ask: 3 * time.Hour, want: 3 * time.Hour},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cred, err := s.worker.IssueToken(t.Context(), vault.TokenRequest{Policies: []string{s.actionPolicy}, TTL: tc.ask, InitialTTL: 5 * time.Second})
			require.NoError(t, err)
			defer func() { _ = s.worker.Revoke(t.Context(), cred.Accessor) }()
			l, err := s.worker.Lookup(t.Context(), cred.Accessor)
			require.NoError(t, err)
			assert.Equal(t, tc.want, l.MaxTTL)
			assert.WithinDuration(t, time.Now(), l.IssuedAt, 2*time.Second)
			assert.Equal(t, l.IssuedAt.Add(tc.want), l.MaxExpiry())
		})
	}
}
