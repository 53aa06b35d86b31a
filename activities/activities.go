// Package activities holds Airlock's Temporal activities: the only code of a
// cycle that touches Vault and Kubernetes. They return names, ids and
// accessors — never credential values — so nothing secret enters history.
package activities

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/singleflight"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
)

// Activities holds the clients the activities use. The worker registers it;
// workflows refer to its methods through a nil pointer.
type Activities struct {
	Catalog *policy.Catalog
	Broker  *vault.Broker
	// Agents issues action tokens as children of their agent's token, so
	// revoking an agent (the kill switch) revokes every lease below it.
	// Nil: action tokens are children of the worker's own token.
	Agents *vault.AgentTokens
	Jobs   *k8s.Runner
	// JobVaultAddr is the VAULT_ADDR an action's container uses to reach Vault.
	JobVaultAddr string
	// LeaseMargin is added to an action's deadline to give its token's
	// explicit max TTL. Default: 2m.
	LeaseMargin time.Duration
	// LeaseFuse is the TTL a token is issued with until staging has recorded
	// its accessor in the Job's Secret. Default: DefaultLeaseFuse.
	LeaseFuse time.Duration
	// ActionTokenTTL is what a recorded token is extended to, and renewed
	// to while its Job runs; a token nobody renews dies this long after its
	// last renewal. Default: DefaultActionTokenTTL.
	ActionTokenTTL time.Duration
	// CredentialMaxTTL caps the explicit max TTL of one action credential
	// (Vault's token role may cap it lower). An action whose deadline +
	// margin exceeds what its credential may live has it rotated while its
	// Job runs (rotation.go). Keep it at or below the action token role's
	// token_explicit_max_ttl (not visible on a token: it caps renewals) and
	// above RotationGrace / (1 - RotateAt), so the replaced credential is
	// revoked, not expired, and the container switches in time.
	// Default: DefaultCredentialMaxTTL.
	CredentialMaxTTL time.Duration
	// RotateAt is the share of a credential's maximum life after which the
	// next one is issued, in (0, 1). Default: DefaultRotateAt (2/3).
	RotateAt float64
	// RotationGrace is how long a replaced credential stays valid after the
	// Job's Secret holds the next one. Default: DefaultRotationGrace.
	RotationGrace time.Duration
	// rotationHook, set by tests, is called at named steps of a rotation;
	// true stops it there as if the worker had been killed.
	rotationHook func(step string) (kill bool)
	// Metrics records leases and Jobs. Nil records nothing.
	Metrics *telemetry.Metrics
	// Identity verifies that a cycle request was signed by the agent it
	// names (VerifyRequest). Nil refuses every request: fail closed.
	Identity IdentityVerifier
	// Temporal reaches the agents' Agent workflows (PlanCycle,
	// ReportCycle) and cancels an agent's cycles (KillAgent). Nil: cycles
	// that plan with the agent's state are refused (fail closed).
	Temporal client.Client
	// AgentStates overrides where PlanCycle reads an agent's state.
	// Default: its Agent workflow, through Temporal.
	AgentStates AgentStateReader
	// AuditSigner signs cycles' audit-trail heads (SignAuditHead). Nil:
	// trails record that their heads are unsigned, which `cycle audit`
	// refuses.
	AuditSigner AuditHeadSigner

	// trustSent remembers, per agent, the catalog trust settings this worker
	// has signalled to the agent's workflow: they are not in the memo that
	// cycles read, so without it every cycle would re-signal them.
	trustSent sync.Map // agent id → policy.Trust
	// catalogSignals lets concurrent cycles of one agent that find its
	// catalog undelivered share one signal (a new worker's first burst
	// would otherwise send one per cycle).
	catalogSignals singleflight.Group
	// reservations and reports go to each agent's workflow in batches
	// (agent_batches.go).
	reservations, reports agentBatches
	// agentReads lets concurrent cycles of one agent share a read of its
	// state (readAgent).
	agentReads singleflight.Group
}

// Error types the workflow treats as permanent.
const (
	ErrTypeJobConflict = "JobConflict"
)

// Annotations on an action's Secret. Only the accessor is stored, never the token.
const (
	AnnotationLeaseAccessor = "airlock.dev/lease-accessor"
	AnnotationLeaseTTL      = "airlock.dev/lease-ttl"
	AnnotationDBLease       = "airlock.dev/db-lease-id"
)

const defaultLeaseMargin = 2 * time.Minute

// Defaults of the lease lifetimes.
const (
	DefaultLeaseFuse      = 10 * time.Second
	DefaultActionTokenTTL = 5 * time.Minute
)

func (a *Activities) leaseMargin() time.Duration { return orDefault(a.LeaseMargin, defaultLeaseMargin) }
func (a *Activities) leaseFuse() time.Duration   { return orDefault(a.LeaseFuse, DefaultLeaseFuse) }
func (a *Activities) actionTokenTTL() time.Duration {
	return orDefault(a.ActionTokenTTL, DefaultActionTokenTTL)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// permanent marks errors that retrying cannot fix.
func permanent(errType string, err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), errType, nil)
}

// PlanInput is what the workflow asks the catalog to validate and render.
type PlanInput struct {
	AgentID string            `json:"agent_id"`
	Actions []policy.Proposal `json:"actions"`
	// Phases are the agent's current phases (its Agent workflow's state);
	// nil plans with the catalog's. Never above the catalog's either way.
	Phases map[policy.Class]policy.Phase `json:"phases,omitempty"`
	// Version is the request's version (PlanCycle: a canary is planned in
	// shadow).
	Version string `json:"version,omitempty"`
}

// Plan validates a cycle's proposals against the worker's catalog and renders
// them. It runs as a local activity: the catalog is worker configuration,
// and the rendered plan is recorded in history so replays stay deterministic.
func (a *Activities) Plan(_ context.Context, in PlanInput) (*policy.Plan, error) {
	if a.Catalog == nil {
		return nil, errors.New("plan: worker has no catalog")
	}
	p, err := a.Catalog.PlanWithPhases(in.AgentID, in.Actions, in.Phases)
	if err != nil {
		var rerr *policy.RequestError
		if errors.As(err, &rerr) {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), contract.ErrTypeInvalidRequest, nil, rerr.Problems)
		}
		return nil, err
	}
	return p, nil
}
