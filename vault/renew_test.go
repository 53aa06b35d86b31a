package vault_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/vault"
)

// shortToken creates a renewable token with a short TTL and a longer
// explicit max, as root, and returns its accessor.
func shortToken(t *testing.T, ttl, maxTTL string) string {
	t.Helper()
	s, err := rootClient(t).Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{"default"}, TTL: ttl, ExplicitMaxTTL: maxTTL, Renewable: new(true),
	})
	require.NoError(t, err)
	return s.Auth.Accessor
}

// events collects what a Renewer reports.
type events struct {
	mu      sync.Mutex
	renewed map[string]int
	errs    map[string][]error
}

func newEvents() *events { return &events{renewed: map[string]int{}, errs: map[string][]error{}} }

func (e *events) opts() vault.RenewOptions {
	return vault.RenewOptions{
		OnRenew: func(r vault.LeaseRef, _ time.Duration) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.renewed[r.ID]++
		},
		OnError: func(r vault.LeaseRef, err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.errs[r.ID] = append(e.errs[r.ID], err)
		},
	}
}

func (e *events) count(id string) (int, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.renewed[id], append([]error(nil), e.errs[id]...)
}

func TestKeepAliveKeepsATokenAlive(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()
	b := rootBroker(t)
	renewed := shortToken(t, "3s", "30s")
	unrenewed := shortToken(t, "3s", "30s")

	ev := newEvents()
	start := time.Now()
	r := b.KeepAlive(ctx, ev.opts(), vault.TokenLease(renewed))
	defer r.Stop()
	// Wait until the twin without renewal has expired and the renewer has
	// gone round several times: the renewed token has then outlived its TTL.
	require.Eventually(t, func() bool {
		_, err := b.Lookup(ctx, unrenewed)
		n, _ := ev.count(renewed)
		return errors.Is(err, vault.ErrNotFound) && n >= 6
	}, 20*time.Second, 100*time.Millisecond, "the unrenewed token expires and the renewer renews")
	elapsed := time.Since(start)

	_, err := b.Lookup(ctx, renewed)
	assert.NoError(t, err, "a renewed 3s token is alive after %s", elapsed)
	n, errs := ev.count(renewed)
	assert.Empty(t, errs)
	// About every second (a third of 3s, ±10%), plus the first at once.
	assert.LessOrEqual(t, elapsed, 8*time.Second, "six renewals took longer than 8s")
	assert.LessOrEqual(t, n, int(elapsed/(900*time.Millisecond))+2, "renewed more often than about every second")

	r.Stop()
	r.Stop()
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
}

func TestKeepAliveEnds(t *testing.T) {
	verifyNoLeaks(t)
	ctx := t.Context()
	b := rootBroker(t)

	t.Run("at the max TTL", func(t *testing.T) {
		acc := shortToken(t, "2s", "4s")
		ev := newEvents()
		r := b.KeepAlive(ctx, ev.opts(), vault.TokenLease(acc))
		defer r.Stop()
		select {
		case <-r.Done():
		case <-time.After(8 * time.Second):
			t.Fatal("renewer still running after the token's max TTL")
		}
		_, errs := ev.count(acc)
		assert.Empty(t, errs, "reaching the max is not an error")
	})

	t.Run("when the lease is gone", func(t *testing.T) {
		acc := shortToken(t, "1m", "1h")
		require.NoError(t, b.Revoke(ctx, acc))
		ev := newEvents()
		r := b.KeepAlive(ctx, ev.opts(), vault.TokenLease(acc), vault.SecretLease("database/creds/nothing/abc"))
		defer r.Stop()
		select {
		case <-r.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("renewer still running for a revoked token")
		}
		_, errs := ev.count(acc)
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], vault.ErrNotFound)
		_, errs = ev.count("database/creds/nothing/abc")
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], vault.ErrLeaseNotFound)
	})

	t.Run("when the context ends", func(t *testing.T) {
		acc := shortToken(t, "1m", "1h")
		cctx, cancel := context.WithCancel(ctx)
		r := b.KeepAlive(cctx, vault.RenewOptions{}, vault.TokenLease(acc))
		cancel()
		select {
		case <-r.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("renewer ignores its context")
		}
	})
}

func TestRenewOnce(t *testing.T) {
	ctx := t.Context()
	b := rootBroker(t)
	acc := shortToken(t, "1m", "1h")
	ttl, err := b.Renew(ctx, vault.TokenLease(acc), 5*time.Minute)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Minute, ttl)

	_, err = b.Renew(ctx, vault.TokenLease("no-such-accessor"), 0)
	assert.ErrorIs(t, err, vault.ErrNotFound)
	_, err = b.Renew(ctx, vault.LeaseRef{Kind: "bogus", ID: "x"}, 0)
	assert.Error(t, err)
	_, err = b.Renew(ctx, vault.TokenLease(""), 0)
	assert.Error(t, err)
}
