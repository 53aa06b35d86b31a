package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/vault"
)

// Credential rotation: an action whose deadline outlives what one credential
// may live (the token's explicit max TTL, capped by its token role and by
// CredentialMaxTTL; a database lease's max_ttl) gets the next credential
// before the current one expires. RunJob issues it, writes it into the Job's
// Secret — the container reads it from the file the kubelet refreshes
// (k8s.CredentialsDir) — and revokes the previous one after RotationGrace.
//
// Crash safety: the Secret's AnnotationLeaseAccessors (and AnnotationDBLeases)
// lists every credential of the Job that may be alive. A new token is issued
// on the short fuse and listed there before it is extended or delivered; it
// leaves the list only once revoked. ReleaseAction revokes everything listed,
// so a worker killed at any point of a rotation leaves nothing valid after
// the action is released, and a retried RunJob revokes what the dead attempt
// left listed after the grace.

// Annotations of rotation (on the Job's Secret).
const (
	// AnnotationLeaseAccessors lists (comma-separated) the accessors of
	// every token of the action that may still be valid: the current one,
	// one being issued, ones in their grace.
	AnnotationLeaseAccessors = "airlock.dev/lease-accessors"
	// AnnotationDBLeases lists the database leases the same way.
	AnnotationDBLeases = "airlock.dev/db-lease-ids"
	// AnnotationLeaseRequest is what the action's credentials were issued
	// from (policies, role, KV paths, database role; JSON, no secret), so
	// that RunJob can issue the next ones.
	AnnotationLeaseRequest = "airlock.dev/lease-request"
)

// Defaults of rotation.
const (
	// DefaultRotateAt is the share of a credential's maximum life after
	// which the next one is issued.
	DefaultRotateAt = 2.0 / 3
	// DefaultRotationGrace is how long a replaced credential stays valid,
	// so the container can switch to the new file. It must exceed how long
	// the kubelet takes to refresh a Secret volume: up to 1.5 × its
	// syncFrequency (1 m by default) plus its cache TTL.
	DefaultRotationGrace = 2 * time.Minute
	// DefaultCredentialMaxTTL is below the default action token role's max
	// TTL and the agent token period (both 2h): a longer action is rotated
	// instead of refused or cut short.
	DefaultCredentialMaxTTL = time.Hour
)

func (a *Activities) rotateAt() float64 {
	if a.RotateAt > 0 && a.RotateAt < 1 {
		return a.RotateAt
	}
	return DefaultRotateAt
}

func (a *Activities) rotationGrace() time.Duration {
	return orDefault(a.RotationGrace, DefaultRotationGrace)
}

// credentialTTL is the explicit max TTL to ask for a credential that should
// last need: need, capped by CredentialMaxTTL.
func (a *Activities) credentialTTL(need time.Duration) time.Duration {
	return min(need, orDefault(a.CredentialMaxTTL, DefaultCredentialMaxTTL))
}

// leaseRequest is what an action's credentials are issued from; recorded on
// its Secret (AnnotationLeaseRequest). Names and paths only.
type leaseRequest struct {
	Policies []string          `json:"policies"`
	ReadOnly bool              `json:"read_only,omitempty"`
	KV       map[string]string `json:"kv,omitempty"` // env -> path#key
	DBRole   string            `json:"db_role,omitempty"`
}

func (r leaseRequest) annotation() string {
	b, _ := json.Marshal(r) // strings, a bool and maps of strings
	return string(b)
}

// rotationDue says whether a credential issued at issued, which cannot be
// renewed past hardEnd, must be replaced for a Job that may run until end,
// and when: once the share rotateAt of its life has passed. A credential
// without a hard end (zero) or lasting past end needs no rotation.
func rotationDue(issued, hardEnd, end time.Time, rotateAt float64) (time.Time, bool) {
	if hardEnd.IsZero() || !hardEnd.Before(end) {
		return time.Time{}, false
	}
	return issued.Add(time.Duration(float64(hardEnd.Sub(issued)) * rotateAt)), true
}

// jobEnd is the latest the Job's Pod may run: its start (now if not started
// yet) plus its activeDeadlineSeconds.
func jobEnd(job *batchv1.Job, now time.Time) time.Time {
	start := now
	if job.Status.StartTime != nil {
		start = job.Status.StartTime.Time
	}
	if d := job.Spec.ActiveDeadlineSeconds; d != nil {
		return start.Add(time.Duration(*d) * time.Second)
	}
	return start
}

// splitList and joinList read and write the comma-separated lists.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func joinList(items ...string) string {
	var out []string
	for _, v := range items {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return strings.Join(out, ",")
}

func without(list []string, v string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return s == v })
}

// recordedLeases lists every token accessor and database lease the Secret
// (or, without one, the Job) records for the action.
func recordedLeases(sec *corev1.Secret, job *batchv1.Job) (accessors, dbLeases []string) {
	if sec != nil {
		accessors = splitList(joinList(append([]string{sec.Annotations[AnnotationLeaseAccessor]}, splitList(sec.Annotations[AnnotationLeaseAccessors])...)...))
		dbLeases = splitList(joinList(append([]string{sec.Annotations[AnnotationDBLease]}, splitList(sec.Annotations[AnnotationDBLeases])...)...))
	}
	if job != nil && job.Annotations[AnnotationLeaseAccessor] != "" && !slices.Contains(accessors, job.Annotations[AnnotationLeaseAccessor]) {
		accessors = append(accessors, job.Annotations[AnnotationLeaseAccessor])
	}
	return accessors, dbLeases
}

// readCredentials reads, with the action's own token, the KV values and
// database credentials it is to get, and returns the Secret's data.
func (a *Activities) readCredentials(ctx context.Context, cred vault.Credential, kvs map[string]string, dbRole string) (data map[string][]byte, dbLease string, err error) {
	data = map[string][]byte{tokenEnv: []byte(cred.Value())}
	// Secrets are read with the action's own token: its policy decides what
	// it may read, and leases die with the token.
	as, err := a.Broker.As(cred)
	if err != nil {
		return nil, "", err
	}
	for _, env := range slices.Sorted(maps.Keys(kvs)) {
		path, key, _ := strings.Cut(kvs[env], "#")
		kv, err := as.ReadKV(ctx, path)
		if err != nil {
			return nil, "", fmt.Errorf("read %s for %s: %w", path, env, err)
		}
		v, ok := kv.Get(key)
		if !ok {
			return nil, "", &missingKeyError{path: path, env: env, key: key}
		}
		data[env] = []byte(v)
	}
	if dbRole != "" {
		db, err := as.DatabaseCredential(ctx, dbRole)
		if err != nil {
			a.Metrics.LeaseFailed(ctx, "database")
			return nil, "", fmt.Errorf("lease database credentials: %w", err)
		}
		a.Metrics.LeaseIssued(ctx, "database")
		data[dbUserEnv], data[dbPasswordEnv] = []byte(db.Username()), []byte(db.Password())
		dbLease = db.LeaseID
	}
	return data, dbLease, nil
}

// missingKeyError: a KV secret lacks the key the catalog names.
// errKilled ends a rotation a test stops as a killed worker would stop.
var errKilled = errors.New("rotation stopped by a test")

type missingKeyError struct{ path, env, key string }

func (e *missingKeyError) Error() string {
	return fmt.Sprintf("read %s for %s: no key %q", e.path, e.env, e.key)
}

// held is one credential of the Job: its token and database lease, renewed
// by this attempt (renewer may be nil) until revoked at retireAt.
type held struct {
	accessor, dbLease string
	renewer           *vault.Renewer
	retireAt          time.Time
}

func (h *held) stop() {
	if h.renewer != nil {
		h.renewer.Stop()
		h.renewer = nil
	}
}

// keeper keeps a running Job's credentials valid: it renews them and, when
// the Job outlives them, rotates them. One goroutine owns it (run).
type keeper struct {
	a   *Activities
	log log.Logger
	job *batchv1.Job
	sec *corev1.Secret // as last read or written
	req leaseRequest
	end time.Time

	current  *held
	retiring []*held
	due      time.Time // of the next rotation; zero: none needed
	// dbCap receives the hard end of a lease when a renewal shows a max TTL
	// capping it: a database role's max_ttl, a token role's explicit max.
	dbCap chan dbCapped
	// issued are the accessors this attempt issued: revoked if the activity
	// is cancelled (the cycle releasing the action may already have read
	// the Secret).
	issued []string
}

type dbCapped struct {
	lease string
	until time.Time
}

// keepCredentials renews the Job's credentials while it runs and rotates
// them when it outlives them (see keeper). It returns a function that stops
// it and waits. Without a recorded Secret it only renews what in names.
func (a *Activities) keepCredentials(ctx context.Context, in RunInput) (stop func()) {
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.runKeeper(kctx, ctx, in)
	}()
	return func() { cancel(); <-done }
}

// runKeeper runs until ctx ends; parent is the activity's context.
func (a *Activities) runKeeper(ctx, parent context.Context, in RunInput) {
	lg := actionLog(ctx)
	k := &keeper{a: a, log: lg, dbCap: make(chan dbCapped, 1)}
	err := k.load(ctx, in)
	if err != nil && ctx.Err() == nil {
		lg.Warn("read the job's credentials record; renewing without rotation", "job", in.JobName, "error", err)
	}
	if k.current == nil {
		// Nothing recorded to rotate from: keep alive what staging reported.
		k.current = &held{accessor: in.LeaseAccessor, dbLease: in.DBLeaseID}
		k.renew(ctx, k.current)
		<-ctx.Done()
		k.current.stop()
		return
	}
	defer k.close(parent)
	k.renew(ctx, k.current)
	k.plan(ctx)
	for {
		next := k.due
		for _, r := range k.retiring {
			if next.IsZero() || r.retireAt.Before(next) {
				next = r.retireAt
			}
		}
		var timer <-chan time.Time
		t := time.NewTimer(time.Until(next))
		if !next.IsZero() {
			timer = t.C
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case c := <-k.dbCap:
			t.Stop()
			if c.lease == k.current.dbLease || c.lease == k.current.accessor {
				if at, ok := rotationDue(time.Now(), c.until, k.end, k.a.rotateAt()); ok && (k.due.IsZero() || at.Before(k.due)) {
					k.due = at
				}
			}
		case <-timer:
			k.retire(ctx)
			if !k.due.IsZero() && !time.Now().Before(k.due) {
				if err := k.rotate(ctx); err != nil {
					if ctx.Err() != nil {
						return
					}
					// The current credential is still valid: try again
					// soon, well before it expires.
					lg.Warn("rotate credentials", "job", in.JobName, "error", err)
					k.due = time.Now().Add(max(time.Second, k.a.leaseFuse()/2))
				}
			}
		}
	}
}

// actionLog is the activity's logger, or a no-op one outside an activity.
func actionLog(ctx context.Context) log.Logger {
	if activity.IsActivity(ctx) {
		return activity.GetLogger(ctx)
	}
	return log.NewStructuredLogger(slog.Default())
}

// load reads the Job and its Secret: the current credential, what the Secret
// lists besides (left by an earlier attempt: revoked after the grace), and
// what to issue the next credential from.
func (k *keeper) load(ctx context.Context, in RunInput) error {
	job, err := k.a.Jobs.GetJob(ctx, in.Namespace, in.JobName)
	if err != nil || job == nil {
		return errors.Join(err, errors.New("job not found"))
	}
	sec, err := k.a.Jobs.GetSecret(ctx, in.Namespace, k8s.SecretName(in.JobName))
	if err != nil || sec == nil || !k8s.OwnedBy(sec, job) || sec.Annotations[AnnotationLeaseAccessor] == "" {
		return errors.Join(err, errors.New("no secret with a recorded lease"))
	}
	k.job, k.sec, k.end = job, sec, jobEnd(job, time.Now())
	if raw := sec.Annotations[AnnotationLeaseRequest]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &k.req); err != nil {
			return fmt.Errorf("lease request: %w", err)
		}
	}
	k.current = &held{accessor: sec.Annotations[AnnotationLeaseAccessor], dbLease: sec.Annotations[AnnotationDBLease]}
	accessors, dbLeases := recordedLeases(sec, nil)
	at := time.Now().Add(k.a.rotationGrace())
	for _, acc := range without(accessors, k.current.accessor) {
		k.retiring = append(k.retiring, &held{accessor: acc, retireAt: at})
	}
	for _, l := range without(dbLeases, k.current.dbLease) {
		k.retiring = append(k.retiring, &held{dbLease: l, retireAt: at})
	}
	return nil
}

// renew starts renewing h's token and database lease.
func (k *keeper) renew(ctx context.Context, h *held) {
	var refs []vault.LeaseRef
	if h.accessor != "" {
		refs = append(refs, vault.TokenLease(h.accessor))
	}
	if h.dbLease != "" {
		refs = append(refs, vault.SecretLease(h.dbLease))
	}
	if len(refs) == 0 {
		return
	}
	inc := k.a.actionTokenTTL()
	h.renewer = k.a.Broker.KeepAlive(ctx, vault.RenewOptions{
		Increment: inc,
		OnError: func(ref vault.LeaseRef, err error) {
			k.log.Warn("renew lease", "kind", ref.Kind, "id", ref.ID, "error", err)
		},
		OnRenew: func(ref vault.LeaseRef, ttl time.Duration) {
			// A lease renewed for less than asked is capped (a database
			// role's max_ttl, a token role's explicit max): it ends then.
			if ttl < inc-time.Second {
				select {
				case k.dbCap <- dbCapped{lease: ref.ID, until: time.Now().Add(ttl)}:
				default:
				}
			}
		},
	}, refs...)
}

// plan sets when the current credential must be replaced, from its token's
// hard end (explicit max TTL). Without a recorded request nothing rotates.
func (k *keeper) plan(ctx context.Context) {
	k.due = time.Time{}
	if len(k.req.Policies) == 0 || k.current.accessor == "" {
		return
	}
	l, err := k.a.Broker.Lookup(ctx, k.current.accessor)
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("look up the action's token", "accessor", k.current.accessor, "error", err)
		}
		return
	}
	if at, ok := rotationDue(l.IssuedAt, l.MaxExpiry(), k.end, k.a.rotateAt()); ok {
		k.due = at
		k.log.Info("credentials will be rotated", "job", k.job.Name, "accessor", k.current.accessor,
			"max_expiry", l.MaxExpiry(), "job_end", k.end, "rotate_at", at)
	}
}

// rotate issues the next credential, records it, delivers it and moves the
// current one into its grace.
func (k *keeper) rotate(ctx context.Context) (err error) {
	job := k.job
	killed := false
	cred, err := k.a.issueToken(ctx, job.Annotations[k8s.AnnotationAgentID], vault.TokenRequest{
		Policies:    k.req.Policies,
		TTL:         k.a.credentialTTL(time.Until(k.end) + k.a.leaseMargin()),
		InitialTTL:  k.a.leaseFuse(),
		DisplayName: "airlock-" + job.Annotations[k8s.AnnotationAgentID],
		ReadOnly:    k.req.ReadOnly,
		Metadata: map[string]string{
			"agent": job.Annotations[k8s.AnnotationAgentID], "workflow_id": job.Annotations[k8s.AnnotationWorkflowID],
			"action_index": job.Labels[k8s.LabelActionIndex], "job": job.Name, "rotated": "true",
		},
	})
	if err != nil {
		k.a.Metrics.LeaseFailed(ctx, "token")
		return fmt.Errorf("rotate: issue token: %w", err)
	}
	k.a.Metrics.LeaseIssued(ctx, "token")
	k.issued = append(k.issued, cred.Accessor)
	defer func() {
		if err == nil || killed {
			return
		}
		// Never delivered: it goes now (with any lease it took).
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := k.a.Broker.Revoke(rctx, cred.Accessor); rerr != nil {
			k.log.Warn("revoke undelivered token", "accessor", cred.Accessor, "error", rerr)
			return
		}
		k.a.Metrics.LeaseRevoked(ctx, "token")
		k.unlist(rctx, cred.Accessor, "")
	}()
	accessors, dbLeases := recordedLeases(k.sec, nil)
	// Recorded before it may live longer than its fuse.
	list := joinList(append(accessors, cred.Accessor)...)
	sec, err := k.a.Jobs.PatchSecretAnnotations(ctx, k.sec, map[string]*string{AnnotationLeaseAccessors: &list})
	if err != nil {
		return fmt.Errorf("rotate: record token: %w", err)
	}
	k.sec = sec
	if k.a.rotationHook != nil && k.a.rotationHook("recorded") {
		// Tests stop a rotation here, as a worker killed now would:
		// nothing more runs, not even the revocation below.
		killed = true
		return errKilled
	}
	ttl, err := k.a.Broker.Renew(ctx, vault.TokenLease(cred.Accessor), k.a.actionTokenTTL())
	if err != nil {
		return fmt.Errorf("rotate: extend token: %w", err)
	}
	data, dbLease, err := k.a.readCredentials(ctx, cred, k.req.KV, k.req.DBRole)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	sec, err = k.a.Jobs.UpdateSecret(ctx, k.sec, data, map[string]string{
		AnnotationLeaseAccessor:  cred.Accessor,
		AnnotationLeaseTTL:       ttl.String(),
		AnnotationLeaseAccessors: list,
		AnnotationDBLease:        dbLease,
		AnnotationDBLeases:       joinList(append(dbLeases, dbLease)...),
	})
	if err != nil {
		return fmt.Errorf("rotate: deliver: %w", err)
	}
	k.sec = sec
	old := k.current
	old.retireAt = time.Now().Add(k.a.rotationGrace())
	k.retiring = append(k.retiring, old)
	k.current = &held{accessor: cred.Accessor, dbLease: dbLease}
	k.renew(ctx, k.current)
	k.log.Info("rotated credentials", "job", job.Name, "accessor", cred.Accessor, "previous", old.accessor, "revoke_at", old.retireAt)
	k.plan(ctx)
	return nil
}

// retire revokes the credentials whose grace is over and takes them off the
// Secret's lists.
func (k *keeper) retire(ctx context.Context) {
	now := time.Now()
	var keep []*held
	for _, h := range k.retiring {
		if now.Before(h.retireAt) {
			keep = append(keep, h)
			continue
		}
		h.stop()
		if err := k.revoke(ctx, h); err != nil {
			if ctx.Err() == nil {
				k.log.Warn("revoke replaced credentials", "accessor", h.accessor, "error", err)
			}
			h.retireAt = now.Add(time.Second)
			keep = append(keep, h)
			continue
		}
		k.log.Info("revoked replaced credentials", "job", k.job.Name, "accessor", h.accessor)
		k.unlist(ctx, h.accessor, h.dbLease)
	}
	k.retiring = keep
}

func (k *keeper) revoke(ctx context.Context, h *held) error {
	if h.dbLease != "" {
		if err := k.a.Broker.RevokeLease(ctx, h.dbLease); err != nil {
			return err
		}
		k.a.Metrics.LeaseRevoked(ctx, "database")
	}
	if h.accessor != "" {
		if err := k.a.Broker.Revoke(ctx, h.accessor); err != nil {
			return err
		}
		k.a.Metrics.LeaseRevoked(ctx, "token")
	}
	return nil
}

// unlist takes revoked credentials off the Secret's lists (best effort: a
// listed credential that is already revoked costs ReleaseAction one call).
func (k *keeper) unlist(ctx context.Context, accessor, dbLease string) {
	for range 2 {
		accessors, dbLeases := splitList(k.sec.Annotations[AnnotationLeaseAccessors]), splitList(k.sec.Annotations[AnnotationDBLeases])
		acc, db := joinList(without(accessors, accessor)...), joinList(without(dbLeases, dbLease)...)
		sec, err := k.a.Jobs.PatchSecretAnnotations(ctx, k.sec, map[string]*string{AnnotationLeaseAccessors: &acc, AnnotationDBLeases: &db})
		if err == nil {
			k.sec = sec
			return
		}
		if !errors.Is(err, k8s.ErrSecretChanged) {
			return
		}
		fresh, gerr := k.a.Jobs.GetSecret(ctx, k.sec.Namespace, k.sec.Name)
		if gerr != nil || fresh == nil {
			return
		}
		k.sec = fresh
	}
}

// close stops renewing. If the activity (ctx) was cancelled (not its worker
// stopping: another attempt continues then), the cycle is releasing the
// action, possibly from a Secret it read before this attempt's last
// rotation: what this attempt issued is revoked here too.
func (k *keeper) close(ctx context.Context) {
	k.current.stop()
	for _, h := range k.retiring {
		h.stop()
	}
	if ctx.Err() == nil || len(k.issued) == 0 || workerStopping(ctx) {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, acc := range k.issued {
		if err := k.a.Broker.Revoke(rctx, acc); err != nil {
			k.log.Warn("revoke rotated token of a cancelled job", "accessor", acc, "error", err)
		}
	}
}

func workerStopping(ctx context.Context) bool {
	if !activity.IsActivity(ctx) {
		return false
	}
	select {
	case <-activity.GetWorkerStopChannel(ctx):
		return true
	default:
		return false
	}
}
