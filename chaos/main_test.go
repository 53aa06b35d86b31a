// Package chaos proves Airlock's crash and load claims on the real stack:
// several `airlock worker` processes, built from ./cmd/airlock as operators
// run them, are SIGKILLed at random moments while cycles of every phase run,
// and afterwards nothing may be lost, stuck, run twice or left valid.
//
// `go test ./chaos/` (part of make test) runs a CI-sized round; `make chaos`
// a bigger one. Sizes and the seed come from the environment:
//
//	CHAOS_CYCLES      cycles in the kill round (default 48)
//	CHAOS_WORKERS     worker processes (default 3)
//	CHAOS_SEED        seed of the kill schedule (default: time; always printed)
//	CHAOS_LOAD        concurrent cycles of the one-worker load round (default 100)
//	CHAOS_AIRLOCK_BIN an airlock binary to test instead of building ./cmd/airlock
package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"

	"k8s.io/client-go/kubernetes"
)

const digest = "@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"

// catalogYAML: every action "runs" 1.5 s on the kwok node; one reads
// dynamic PostgreSQL credentials so DB leases are counted too.
const catalogYAML = `
actions:
  - name: probe
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "echo probe {{.seq}}"]
    params_schema: {type: object, required: [seq], properties: {seq: {type: integer}}}
    class: read
    risk: low
    vault_policies: [airlock-chaos-read]
    deadline: 2m
    pod_annotations:
      kwok.airlock.dev/result: 'probed'
      kwok.airlock.dev/duration-ms: "1500"
  - name: db-probe
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "psql -c 'select 1'"]
    class: read
    risk: low
    vault_policies: [airlock-chaos-db]
    vault_db_role: database/chaos-readonly
    deadline: 2m
    pod_annotations:
      kwok.airlock.dev/result: 'db ok'
      kwok.airlock.dev/duration-ms: "1500"
  - name: patch
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "echo patch {{.seq}}"]
    params_schema: {type: object, required: [seq], properties: {seq: {type: integer}}}
    class: write
    risk: medium
    vault_policies: [airlock-chaos-write]
    deadline: 2m
    pod_annotations:
      kwok.airlock.dev/result: 'patched'
      kwok.airlock.dev/duration-ms: "1500"
agents:
  # Test agents keep the phases the tests expect: they fail, are denied
  # and send invalid requests on purpose, so demotion is off (the
  # earned-trust tests use agents of their own).
  - id: chaos-auto
    owner: chaos
    approvers: [U1, U2]
    namespace: airlock-chaos-auto
    actions: [probe, db-probe, patch]
    phases: {read: autonomous, write: autonomous}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    # The load round runs 200 Jobs at once for this one agent.
    quota: {pods: 400, cpu: "64", memory: 64Gi}
    budgets: {running_jobs: 400, actions_per_hour: 1000000}
  - id: chaos-adv
    owner: chaos
    approvers: [U1, U2]
    namespace: airlock-chaos-adv
    actions: [probe, patch]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    approval_timeout: 30m
    # TestManyWaitingCycles parks up to 10,000 approvals at once, then
    # approves 100 of them at once: a quota of 10 Pods would hold most of
    # those Jobs back, and the Job controller's backoff can keep one past
    # its deadline (DeadlineExceeded, never run). Running Jobs stay within
    # the quota, as policy.Budgets.RunningJobs asks.
    quota: {pods: 400, cpu: "64", memory: 64Gi}
    budgets: {running_jobs: 400, actions_per_hour: 1000000, pending_approvals: 100000, approval_requests_per_hour: 1000000}
  - id: chaos-sup
    owner: chaos
    approvers: [U1, U2]
    namespace: airlock-chaos-sup
    actions: [probe, patch]
    phases: {read: autonomous, write: supervised}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    veto_window: 2s
    budgets: {running_jobs: 400, actions_per_hour: 1000000}
  - id: chaos-shadow
    owner: chaos
    approvers: [U1, U2]
    namespace: airlock-chaos-shadow
    actions: [probe, patch]
    phases: {read: shadow, write: shadow}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    budgets: {running_jobs: 400, actions_per_hour: 1000000}
`

var env struct {
	stack   *devstack.Stack
	pg      *devstack.Postgres
	tc      client.Client
	starter *starter.Client
	broker  *vault.Broker
	kube    kubernetes.Interface
	catalog *policy.Catalog
	catPath string
	bin     string
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "devstack: "+f+"\n", a...) }
	stack, err := devstack.Start(context.Background(), devstack.Options{Temporal: true, Vault: true, VaultPersistent: true, Kube: true, Logf: logf})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	defer stack.Stop()
	cleanup, err := setup(stack)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: setup:", err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

func setup(stack *devstack.Stack) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env.stack = stack
	var err error
	if env.catalog, err = policy.Parse("chaos catalog", []byte(catalogYAML)); err != nil {
		return nil, err
	}
	env.catPath = filepath.Join(stack.Dir, "catalog.yaml")
	if err := os.WriteFile(env.catPath, []byte(catalogYAML), 0o600); err != nil {
		return nil, err
	}
	if env.broker, err = vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken}); err != nil {
		return nil, err
	}
	if env.kube, err = kubernetes.NewForConfig(stack.RestConfig); err != nil {
		return nil, err
	}
	if err := devsetup.Prepare(ctx, env.catalog, env.broker, k8s.NewRunner(env.kube)); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if env.pg, err = devstack.StartPostgres(ctx, stack.Dir+"/postgres"); err != nil {
		return nil, err
	}
	if err := env.broker.ConfigureDatabase(ctx, vault.DatabaseConfig{
		Mount: "database", Name: "chaos",
		ConnectionURL: fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/%s?sslmode=disable", env.pg.Addr(), env.pg.Database),
		Username:      env.pg.User, Password: env.pg.Password, AllowedRoles: []string{"chaos-readonly"},
	}); err != nil {
		return nil, err
	}
	role := vault.PostgresReadOnlyRole("chaos-readonly", "chaos", "public", 10*time.Minute, time.Hour)
	role.Mount = "database"
	if err := env.broker.EnsureDatabaseRole(ctx, role); err != nil {
		return nil, err
	}
	var cod *codec.Codec
	if cod, err = worker.NewCodec(ctx, worker.CodecConfig{VaultAddr: stack.VaultAddr, VaultToken: stack.VaultToken}, true); err != nil {
		return nil, err
	}
	if env.tc, err = worker.Dial(ctx, worker.ClientConfig{Address: stack.TemporalAddress, Codec: cod}); err != nil {
		return nil, err
	}
	// Cycles are signed as their agent (DESIGN invariant 9); the root token
	// stands in for each agent's own Vault login.
	signer, err := vault.NewSigner(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken})
	if err != nil {
		return nil, err
	}
	env.starter = starter.New(env.tc, starter.WithCatalog(env.catalog), starter.WithSigner(signer))
	if env.bin, err = airlockBinary(ctx, stack.Dir); err != nil {
		return nil, err
	}
	return func() {
		env.tc.Close()
		_ = env.pg.Stop()
	}, nil
}

// airlockBinary builds ./cmd/airlock, the binary operators run, unless
// CHAOS_AIRLOCK_BIN names one (e.g. an older build, to reproduce a defect).
func airlockBinary(ctx context.Context, dir string) (string, error) {
	if b := os.Getenv("CHAOS_AIRLOCK_BIN"); b != "" {
		return b, nil
	}
	out := filepath.Join(dir, "airlock")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/airlockhq/airlock/cmd/airlock")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build airlock: %w", err)
	}
	fmt.Fprintf(os.Stderr, "chaos: built %s in %s\n", out, time.Since(start).Round(time.Millisecond))
	return out, nil
}
