// Package e2e runs Airlock end to end on the real servers: the Temporal dev
// server, Vault in dev mode and a Kubernetes control plane (etcd,
// kube-apiserver, controller manager, scheduler) whose node is simulated by
// kwok. tools/build.sh builds them; `make test` runs both.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/client"
	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

const digest = "@sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"

// The test catalog. Pod annotations drive the kwok simulator: what the
// container "prints", whether it fails, and how long it runs.
const catalogYAML = `
actions:
  - name: echo
    image: docker.io/library/busybox` + digest + `
    command: ["echo", "{{.text}}"]
    params_schema: {type: object, required: [text], properties: {text: {type: string, maxLength: 100}}, additionalProperties: false}
    class: read
    risk: low
    vault_policies: [airlock-e2e-read]
    egress: [{cidr: 10.96.0.0/12, port: 443}]
    deadline: 1m
    pod_annotations:
      kwok.airlock.dev/result: '{"echo":"done"}'
  - name: slow-write
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "sleep 2; echo {{.target}}"]
    params_schema: {type: object, required: [target], properties: {target: {type: string}}}
    class: write
    risk: medium
    vault_policies: [airlock-e2e-write]
    deadline: 1m
    pod_annotations:
      kwok.airlock.dev/result: '{"written":true}'
      kwok.airlock.dev/duration-ms: "2500"
  - name: broken
    image: docker.io/library/busybox` + digest + `
    command: ["false"]
    class: write
    risk: low
    vault_policies: [airlock-e2e-write]
    deadline: 1m
    pod_annotations:
      kwok.airlock.dev/fail: "true"
      kwok.airlock.dev/result: 'boom'
  - name: quick-write
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "echo {{.target}}"]
    params_schema: {type: object, required: [target], properties: {target: {type: string}}}
    class: write
    risk: medium
    vault_policies: [airlock-e2e-write]
    deadline: 1m
    pod_annotations:
      kwok.airlock.dev/result: 'approved write done'
  - name: greedy-write
    image: docker.io/library/busybox` + digest + `
    command: ["true"]
    class: write
    risk: low
    vault_policies: [airlock-e2e-write]
    pod_annotations:
      "not a valid annotation key!": "x"
  - name: db-report
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "psql -c 'select count(*) from widgets'"]
    class: read
    risk: low
    vault_policies: [airlock-e2e-db]
    vault_db_role: database/e2e-readonly
    deadline: 1m
    pod_annotations:
      kwok.airlock.dev/result: '{"widgets":2}'
      kwok.airlock.dev/duration-ms: "3000"
  - name: kv-read
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "curl -H \"Authorization: Bearer $API_TOKEN\" https://api.internal/health"]
    class: read
    risk: low
    vault_policies: [airlock-e2e-read]
    vault_kv:
      API_TOKEN: secret/airlock/airlock-e2e-read/payments-api#token
    deadline: 1m
    pod_annotations:
      kwok.airlock.dev/result: 'healthy'
      kwok.airlock.dev/duration-ms: "1500"
  - name: long-read
    image: docker.io/library/busybox` + digest + `
    command: ["sleep", "8"]
    class: read
    risk: low
    vault_policies: [airlock-e2e-read]
    deadline: 1m
    pod_annotations:
      kwok.airlock.dev/result: 'slept'
      kwok.airlock.dev/duration-ms: "9000"
  - name: db-slow
    image: docker.io/library/busybox` + digest + `
    command: ["sh", "-c", "psql -c 'select pg_sleep(60)'"]
    class: read
    risk: low
    vault_policies: [airlock-e2e-db]
    vault_db_role: database/e2e-readonly
    deadline: 2m
    pod_annotations:
      kwok.airlock.dev/result: 'slept'
      kwok.airlock.dev/duration-ms: "60000"
  - name: bench-sleep
    image: docker.io/library/busybox` + digest + `
    command: ["sleep", "600"]
    class: read
    risk: low
    vault_policies: [airlock-e2e-read]
    deadline: 15m
    pod_annotations:
      kwok.airlock.dev/result: 'slept'
      kwok.airlock.dev/duration-ms: "600000"
agents:
  # Test agents keep the phases the tests expect: they fail, are denied
  # and send invalid requests on purpose, so demotion is off (the
  # earned-trust tests use agents of their own).
  - id: e2e-adv
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-adv
    actions: [echo, quick-write]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    approval_timeout: 2m
    slack_channel: C0APPROVALS
    budgets: {actions_per_hour: 100000, running_jobs: 1000, pending_approvals: 1000, approval_requests_per_hour: 100000}
  - id: e2e-sup
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-sup
    actions: [quick-write]
    phases: {read: autonomous, write: supervised}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    veto_window: 3s
    budgets: {actions_per_hour: 100000, running_jobs: 1000, pending_approvals: 1000, approval_requests_per_hour: 100000}
  - id: e2e-shadow
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-shadow
    actions: [echo, quick-write, greedy-write]
    phases: {read: shadow, write: shadow}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    budgets: {actions_per_hour: 100000, running_jobs: 1000, pending_approvals: 1000, approval_requests_per_hour: 100000}
  - id: e2e
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e
    actions: [echo, slow-write, broken, db-report, long-read, kv-read, greedy-write]
    phases: {read: autonomous, write: autonomous}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    budgets: {actions_per_hour: 100000, running_jobs: 1000, pending_approvals: 1000, approval_requests_per_hour: 100000}
  - id: e2e-kill-slack
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-kill-slack
    actions: [quick-write]
    phases: {read: autonomous, write: autonomous}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    slack_channel: C0APPROVALS
  - id: e2e-kill
    owner: airlock-tests
    approvers: [U1, U2, U3]
    namespace: airlock-e2e-kill
    actions: [echo, db-slow, long-read, quick-write]
    phases: {read: autonomous, write: autonomous}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
  # Killed by dashboard_test.go (the kill switch counter); nothing else uses it.
  # Earned trust (trust_test.go): writes start in shadow and may earn up to
  # advisory, the catalog's cap.
  - id: e2e-trust
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-trust
    actions: [echo, quick-write]
    phases: {read: autonomous, write: advisory}
    trust: {start: shadow}
    budgets: {actions_per_hour: 100000, pending_approvals: 1000, approval_requests_per_hour: 100000}
  # Canary versions (canary_test.go): v1 is trusted with autonomous writes;
  # any other version is a canary whose writes are dry runs.
  - id: e2e-canary
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-canary
    actions: [echo, quick-write]
    phases: {read: autonomous, write: autonomous}
    trust: {version: v1, canary: {min_pairs: 2, min_agreement: 1}}
  # The Agent workflow's report throughput (agent_bench_test.go).
  - id: e2e-reports
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-reports
    actions: [echo]
    phases: {read: autonomous, write: shadow}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
  - id: e2e-ops
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-ops
    actions: [echo]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
  # Budgets (budget_test.go): one pending approval, one running Job.
  - id: e2e-budget
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-budget
    actions: [long-read, quick-write]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    approval_timeout: 2m
    slack_channel: C0APPROVALS
    budgets: {pending_approvals: 1, running_jobs: 1}
  # Concurrent reservations (budget_test.go): one agent's burst.
  - id: e2e-burst
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-burst
    actions: [echo]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    budgets: {pending_approvals: 10, running_jobs: 10, actions_per_hour: 100000}
  # The kill switch under load (kill_bench_test.go): 20 Jobs at once.
  - id: e2e-kill-bench
    owner: airlock-tests
    approvers: [U1, U2]
    namespace: airlock-e2e-kill-bench
    actions: [bench-sleep]
    phases: {read: autonomous, write: advisory}
    trust: {demotion: {disabled: [denials, failures, rollback, violation, disagreement]}}
    quota: {pods: 25, cpu: "4", memory: 4Gi}
    budgets: {running_jobs: 25, actions_per_hour: 100000}
`

// env is what every test shares: one stack, one worker.
var env struct {
	stack   *devstack.Stack
	tc      client.Client
	starter *starter.Client
	broker  *vault.Broker
	kube    kubernetes.Interface
	catalog *policy.Catalog
	logs    *syncBuffer // everything the worker logged
	slack   *recordingSlack
	agents  *vault.AgentTokens
	pg      *devstack.Postgres
	tel     *telemetry.Telemetry
	spans   *tracetest.InMemoryExporter
	codec   *codec.Codec
	// workerConfig is the configuration the test worker was built from.
	workerConfig worker.Config
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "devstack: "+f+"\n", a...) }
	stack, err := devstack.Start(context.Background(), devstack.Options{Temporal: true, Vault: true, Kube: true, Logf: logf})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer stack.Stop()
	cleanup, err := setup(stack)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup:", err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

func setup(stack *devstack.Stack) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env.stack = stack
	cat, err := policy.Parse("e2e catalog", []byte(catalogYAML))
	if err != nil {
		return nil, err
	}
	env.catalog = cat
	if env.broker, err = vault.NewBroker(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken}); err != nil {
		return nil, err
	}
	if env.kube, err = kubernetes.NewForConfig(stack.RestConfig); err != nil {
		return nil, err
	}
	// The worker is built as production builds it (worker.NewActivities,
	// worker.New): kubeconfig file, client rate limits, Vault login, agent
	// tokens. Action tokens live 3 s unless renewed (their max is deadline
	// + margin), so every Job that runs longer depends on renewal.
	catPath := filepath.Join(stack.Dir, "catalog.yaml")
	if err := os.WriteFile(catPath, []byte(catalogYAML), 0o600); err != nil {
		return nil, err
	}
	env.workerConfig = worker.Config{
		TemporalAddress: stack.TemporalAddress, VaultAddr: stack.VaultAddr, VaultToken: stack.VaultToken,
		Kubeconfig: stack.Kubeconfig, CatalogPath: catPath, JobVaultAddr: "http://vault.example:8200",
		ActionTokenTTL: 3 * time.Second,
	}
	acts, closeActs, err := worker.NewActivities(ctx, env.workerConfig)
	if err != nil {
		return nil, err
	}
	env.agents = acts.Agents
	if err := devsetup.Prepare(ctx, cat, acts.Broker, acts.Jobs); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if env.pg, err = devstack.StartPostgres(ctx, stack.Dir+"/postgres"); err != nil {
		return nil, err
	}
	if err := configureDatabase(ctx); err != nil {
		return nil, err
	}
	env.logs = &syncBuffer{}
	env.spans = tracetest.NewInMemoryExporter()
	if env.tel, err = telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-e2e", LogWriter: env.logs, LogLevel: slog.LevelDebug, SpanExporter: env.spans}); err != nil {
		return nil, err
	}
	logger := env.tel.Logger
	acts.Metrics = env.tel.Metrics
	if env.codec, err = worker.NewCodec(ctx, worker.CodecConfig{VaultAddr: stack.VaultAddr, VaultToken: stack.VaultToken}, true); err != nil {
		return nil, err
	}
	if env.tc, err = worker.Dial(ctx, worker.ClientConfig{Address: stack.TemporalAddress, Logger: logger, Telemetry: env.tel, Codec: env.codec}); err != nil {
		return nil, err
	}
	env.slack = newRecordingSlack()
	notifier, err := approval.NewNotifier("xoxb-e2e-bot-token", approval.WithAPIURL(env.slack.GetAPIURL()), approval.WithDefaultChannel("C0DEFAULT"))
	if err != nil {
		return nil, err
	}
	w := worker.New(env.tc, env.workerConfig, acts, notifier)
	if err := w.Start(); err != nil {
		return nil, err
	}
	env.starter = starter.New(env.tc, starter.WithCatalog(cat), starter.WithSigner(newTestSigner(stack)))
	return func() {
		w.Stop()
		env.tc.Close()
		env.slack.Stop()
		closeActs()
		_ = env.pg.Stop()
		_ = env.tel.Shutdown(context.Background())
	}, nil
}

// configureDatabase points Vault's database engine at the test PostgreSQL
// with a read-only role (again after a Vault restart: dev mode forgets).
func configureDatabase(ctx context.Context) error {
	if _, err := env.pg.Psql(ctx, env.pg.User, env.pg.Password,
		"CREATE TABLE IF NOT EXISTS widgets (id int PRIMARY KEY, name text); INSERT INTO widgets VALUES (1, 'sprocket'), (2, 'gear') ON CONFLICT DO NOTHING;"); err != nil {
		return err
	}
	if err := env.broker.ConfigureDatabase(ctx, vault.DatabaseConfig{
		Mount: "database", Name: "widgets",
		ConnectionURL: fmt.Sprintf("postgresql://{{username}}:{{password}}@%s/%s?sslmode=disable", env.pg.Addr(), env.pg.Database),
		Username:      env.pg.User, Password: env.pg.Password, AllowedRoles: []string{"e2e-readonly"},
	}); err != nil {
		return err
	}
	role := vault.PostgresReadOnlyRole("e2e-readonly", "widgets", "public", 10*time.Minute, time.Hour)
	role.Mount = "database"
	return env.broker.EnsureDatabaseRole(ctx, role)
}
