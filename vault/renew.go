package vault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// LeaseKind says what a LeaseRef points at.
type LeaseKind string

const (
	// KindToken is a token, named by its accessor.
	KindToken LeaseKind = "token"
	// KindSecret is a dynamic secret's lease (database credentials…), named
	// by its lease id.
	KindSecret LeaseKind = "secret"
)

// LeaseRef names something the worker can renew and revoke without holding
// its secret: a token by accessor, a dynamic secret by lease id. It is safe
// to record in workflow history.
type LeaseRef struct {
	Kind LeaseKind `json:"kind"`
	ID   string    `json:"id"`
}

// TokenLease refers to a token by its accessor.
func TokenLease(accessor string) LeaseRef { return LeaseRef{Kind: KindToken, ID: accessor} }

// SecretLease refers to a dynamic secret by its lease id.
func SecretLease(leaseID string) LeaseRef { return LeaseRef{Kind: KindSecret, ID: leaseID} }

func (r LeaseRef) String() string { return string(r.Kind) + ":" + r.ID }

// Ref is the credential's token as a LeaseRef.
func (c Credential) Ref() LeaseRef { return TokenLease(c.Accessor) }

// ErrLeaseNotFound is returned for a dynamic-secret lease that no longer
// exists (revoked or expired). Tokens report ErrNotFound.
var ErrLeaseNotFound = errors.New("lease not found")

// Renew extends a token (by accessor, auth/token/renew-accessor) or a
// dynamic secret's lease (sys/leases/renew) once and returns its new TTL.
// increment 0 asks for the lease's own TTL again: a token's creation TTL, a
// database role's default_ttl; Vault caps it at the max TTL. A lease that is
// gone gives ErrNotFound (tokens) or ErrLeaseNotFound (secrets).
//
// The worker's token needs update on auth/token/renew-accessor and
// sys/leases/renew. Renewing by accessor means the activity that keeps a
// Job's credentials alive never holds them.
func (b *Broker) Renew(ctx context.Context, ref LeaseRef, increment time.Duration) (time.Duration, error) {
	if ref.ID == "" {
		return 0, fmt.Errorf("renew %s: empty id", ref.Kind)
	}
	inc := int(increment.Round(time.Second).Seconds())
	switch ref.Kind {
	case KindToken:
		s, err := b.client.Auth().Token().RenewAccessorWithContext(ctx, ref.ID, inc)
		if err != nil {
			if isInvalidAccessor(err) {
				return 0, fmt.Errorf("renew token %s: %w", ref.ID, ErrNotFound)
			}
			return 0, classify("renew token", err)
		}
		if s == nil || s.Auth == nil {
			return 0, errors.New("renew token: empty response")
		}
		return time.Duration(s.Auth.LeaseDuration) * time.Second, nil
	case KindSecret:
		s, err := b.client.Sys().RenewWithContext(ctx, ref.ID, inc)
		if err != nil {
			if isLeaseNotFound(err) {
				return 0, fmt.Errorf("renew lease %s: %w", ref.ID, ErrLeaseNotFound)
			}
			return 0, classify("renew lease", err)
		}
		if s == nil {
			return 0, errors.New("renew lease: empty response")
		}
		return time.Duration(s.LeaseDuration) * time.Second, nil
	default:
		return 0, fmt.Errorf("renew: unknown lease kind %q", ref.Kind)
	}
}

// isLeaseNotFound matches Vault's answers for an unknown or expired lease:
// "lease not found" (renew), "invalid lease" (lookup), "lease expired".
func isLeaseNotFound(err error) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		return false
	}
	msg := strings.Join(re.Errors, " ")
	return strings.Contains(msg, "lease not found") || strings.Contains(msg, "invalid lease") ||
		strings.Contains(msg, "lease expired")
}

// RenewOptions configure KeepAlive.
type RenewOptions struct {
	// Increment asked for at each renewal. Default: 0, the lease's own TTL.
	Increment time.Duration
	// OnError receives every failed renewal. Errors carry lease ids and
	// accessors only. Outages (errors.Is ErrUnavailable) are retried; any
	// other error — the lease is gone (ErrNotFound, ErrLeaseNotFound), the
	// worker may not renew it — ends that lease's renewal. Default: ignored.
	OnError func(LeaseRef, error)
	// OnRenew receives every successful renewal and the new TTL.
	// Default: ignored.
	OnRenew func(LeaseRef, time.Duration)
	// MinInterval is the shortest wait between two renewals of one lease.
	// Default: 500ms.
	MinInterval time.Duration
}

// Renewer keeps leases alive: one goroutine per lease renews it around a
// third of its TTL (±10% jitter) until the context ends, Stop is called,
// the lease is gone, or renewing no longer extends it (its max TTL is
// reached).
type Renewer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
}

// KeepAlive starts renewing refs and returns at once; the first renewal of
// each happens immediately. Stop the Renewer (or cancel ctx) when the Job
// ends; revoking is a separate step.
func (b *Broker) KeepAlive(ctx context.Context, opts RenewOptions, refs ...LeaseRef) *Renewer {
	return startRenewer(ctx, opts, refs, func(ctx context.Context, ref LeaseRef) (time.Duration, error) {
		return b.Renew(ctx, ref, opts.Increment)
	})
}

// renewFunc renews one lease once and returns its new TTL.
type renewFunc func(context.Context, LeaseRef) (time.Duration, error)

func startRenewer(ctx context.Context, opts RenewOptions, refs []LeaseRef, renew renewFunc) *Renewer {
	if opts.MinInterval <= 0 {
		opts.MinInterval = 500 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Renewer{cancel: cancel, done: make(chan struct{})}
	for _, ref := range refs {
		r.wg.Go(func() { renewLoop(ctx, ref, opts, renew) })
	}
	go func() {
		r.wg.Wait()
		close(r.done)
	}()
	return r
}

// Stop ends renewal and waits until every goroutine has returned. It is
// idempotent.
func (r *Renewer) Stop() {
	r.cancel()
	<-r.done
}

// Done is closed once every lease's goroutine has returned.
func (r *Renewer) Done() <-chan struct{} { return r.done }

func renewLoop(ctx context.Context, ref LeaseRef, opts RenewOptions, renew renewFunc) {
	var (
		expiry   time.Time     // as of the last successful renewal
		lastTTL  time.Duration // what that renewal granted
		failures int           // in a row
	)
	for {
		ttl, err := renew(ctx, ref)
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if opts.OnError != nil {
				opts.OnError(ref, err)
			}
			if permanentRenewError(err) {
				return
			}
			failures++
			if expiry.IsZero() {
				// Nothing renewed yet: back off, up to 64 × MinInterval.
				wait = opts.MinInterval << min(failures-1, 6)
			} else {
				// Retry well before the known expiry, more often as it nears.
				wait = time.Until(expiry) / 3
			}
		default:
			if opts.OnRenew != nil {
				opts.OnRenew(ref, ttl)
			}
			// Uncapped, a renewal grants the same TTL every time; once the
			// max TTL caps it, less each time: renewing cannot extend the
			// lease any further.
			if ttl <= 0 || (lastTTL > 0 && ttl < lastTTL) {
				return
			}
			expiry, lastTTL, failures = time.Now().Add(ttl), ttl, 0
			wait = ttl / 3
		}
		wait = max(jitter(wait), opts.MinInterval)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// permanentRenewError says retrying cannot help: the lease is gone, or
// Vault refused (4xx). Outages and 5xx answers (ErrUnavailable) are retried.
func permanentRenewError(err error) bool {
	return !errors.Is(err, ErrUnavailable)
}

// jitter spreads d by ±10% so renewals of many leases do not line up.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}
