// Package worker builds the Temporal client and worker that run Airlock's
// workflows and activities, from configuration that comes from env or flags.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/workflows"
)

// Config is everything a worker needs. FromEnv fills it from the
// environment; flags override.
type Config struct {
	TemporalAddress   string // TEMPORAL_ADDRESS, else a temporal.toml profile. Default: 127.0.0.1:7233
	TemporalNamespace string // TEMPORAL_NAMESPACE, else a temporal.toml profile. Default: default
	VaultAddr         string // VAULT_ADDR
	VaultToken        string // VAULT_TOKEN; never logged
	VaultTokenRole    string // AIRLOCK_VAULT_TOKEN_ROLE. Default: airlock-action
	// VaultAuth is how the worker logs in to Vault: VAULT_AUTH_METHOD
	// token (default, VAULT_TOKEN), kubernetes (VAULT_AUTH_ROLE, the
	// service-account token file) or approle (VAULT_ROLE_ID_FILE,
	// VAULT_SECRET_ID_FILE); VAULT_AUTH_MOUNT overrides the mount.
	VaultAuth     vault.LoginConfig
	JobVaultAddr  string // AIRLOCK_JOB_VAULT_ADDR: VAULT_ADDR inside Jobs. Default: VaultAddr
	Kubeconfig    string // KUBECONFIG; empty means in-cluster config
	CatalogPath   string // AIRLOCK_CATALOG
	TaskQueue     string // Default: contract.TaskQueue
	SlackBotToken string // SLACK_BOT_TOKEN; empty: log instead of posting. Never logged
	SlackAPIURL   string // SLACK_API_URL. Default: Slack's
	SlackChannel  string // AIRLOCK_SLACK_CHANNEL: default channel when an agent names none
	// PlainPayloads turns the payload codec off (AIRLOCK_PLAIN_PAYLOADS=true).
	// Default: payloads are encrypted with keys from Vault Transit.
	PlainPayloads bool
	Codec         CodecConfig
	MetricsAddr   string // AIRLOCK_METRICS_ADDR: Prometheus /metrics. Default: :9090; "off" disables
	// Kube limits the worker's Kubernetes client (AIRLOCK_KUBE_QPS,
	// AIRLOCK_KUBE_BURST). Default: DefaultKubeQPS / DefaultKubeBurst.
	Kube KubeLimits
	// MaxConcurrentActivities bounds the activities (Jobs watched, stagings,
	// releases) one worker runs at once (AIRLOCK_MAX_CONCURRENT_ACTIVITIES).
	// Default: DefaultMaxConcurrentActivities.
	MaxConcurrentActivities int
	// WorkflowCacheSize bounds how many workflows a worker process keeps in
	// memory (AIRLOCK_WORKFLOW_CACHE_SIZE). Cycles waiting for a human are
	// evicted past it and replayed from history when a decision arrives,
	// so memory stays flat however many cycles wait. Default: 1000.
	WorkflowCacheSize int
	// ActionTokenTTL is the TTL action tokens are renewed to while their Job
	// runs (AIRLOCK_ACTION_TOKEN_TTL); their explicit max stays deadline +
	// margin. A token nobody renews any more dies this long after its last
	// renewal. Default: 5m.
	ActionTokenTTL time.Duration
	// LeaseFuse is the TTL an action token is issued with, before staging has
	// recorded its accessor on the Job (AIRLOCK_LEASE_FUSE): a worker killed
	// in between leaves a token that dies this soon. Default: 10s.
	LeaseFuse time.Duration
	// CredentialMaxTTL caps what one action credential may live
	// (AIRLOCK_CREDENTIAL_MAX_TTL); a Job that outlives it has its
	// credentials rotated. RotateAt (AIRLOCK_ROTATE_AT, a share of the
	// credential's life) and RotationGrace (AIRLOCK_ROTATION_GRACE) tune
	// rotation. Defaults: no cap of Airlock's own (the token role's max TTL
	// still applies), activities.DefaultRotateAt, DefaultRotationGrace.
	CredentialMaxTTL time.Duration
	RotateAt         float64
	RotationGrace    time.Duration
}

// KubeLimits is the client-side rate limit of the worker's Kubernetes
// client. client-go's own default (5 requests/s, burst 10) throttles a worker
// running more than a handful of Jobs: every action makes about 14 requests.
// A negative QPS turns the client-side limiter off and leaves protection to
// the apiserver's priority and fairness.
type KubeLimits struct {
	QPS   float32
	Burst int
}

// Defaults sized for DefaultMaxConcurrentActivities: 200 actions starting at
// once make about 1,000 requests in their first second.
const (
	DefaultKubeQPS                 = 500
	DefaultKubeBurst               = 1000
	DefaultMaxConcurrentActivities = 1000
)

// FromEnv reads the configuration from the environment.
func FromEnv() Config {
	return Config{
		TemporalAddress:   os.Getenv("TEMPORAL_ADDRESS"),
		TemporalNamespace: os.Getenv("TEMPORAL_NAMESPACE"),
		VaultAddr:         os.Getenv("VAULT_ADDR"),
		VaultToken:        os.Getenv("VAULT_TOKEN"),
		VaultTokenRole:    os.Getenv("AIRLOCK_VAULT_TOKEN_ROLE"),
		VaultAuth: vault.LoginConfig{
			Method: vault.AuthMethod(os.Getenv("VAULT_AUTH_METHOD")), Mount: os.Getenv("VAULT_AUTH_MOUNT"),
			Role: os.Getenv("VAULT_AUTH_ROLE"), JWTFile: os.Getenv("VAULT_JWT_FILE"),
			RoleIDFile: os.Getenv("VAULT_ROLE_ID_FILE"), SecretIDFile: os.Getenv("VAULT_SECRET_ID_FILE"),
		},
		JobVaultAddr:  os.Getenv("AIRLOCK_JOB_VAULT_ADDR"),
		Kubeconfig:    os.Getenv("KUBECONFIG"),
		CatalogPath:   os.Getenv("AIRLOCK_CATALOG"),
		SlackBotToken: os.Getenv("SLACK_BOT_TOKEN"),
		SlackAPIURL:   os.Getenv("SLACK_API_URL"),
		SlackChannel:  os.Getenv("AIRLOCK_SLACK_CHANNEL"),
		PlainPayloads: os.Getenv("AIRLOCK_PLAIN_PAYLOADS") == "true",
		Codec:         CodecFromEnv(),
		MetricsAddr:   os.Getenv("AIRLOCK_METRICS_ADDR"),
		Kube: KubeLimits{
			QPS:   float32(envFloat("AIRLOCK_KUBE_QPS")),
			Burst: int(envFloat("AIRLOCK_KUBE_BURST")),
		},
		MaxConcurrentActivities: int(envFloat("AIRLOCK_MAX_CONCURRENT_ACTIVITIES")),
		WorkflowCacheSize:       int(envFloat("AIRLOCK_WORKFLOW_CACHE_SIZE")),
		ActionTokenTTL:          envDuration("AIRLOCK_ACTION_TOKEN_TTL"),
		LeaseFuse:               envDuration("AIRLOCK_LEASE_FUSE"),
		CredentialMaxTTL:        envDuration("AIRLOCK_CREDENTIAL_MAX_TTL"),
		RotateAt:                envFloat("AIRLOCK_ROTATE_AT"),
		RotationGrace:           envDuration("AIRLOCK_ROTATION_GRACE"),
	}
}

// envFloat and envDuration read optional numbers; a malformed value reads as
// unset here and is reported by Validate.
func envFloat(name string) float64 {
	v, _ := strconv.ParseFloat(os.Getenv(name), 64)
	return v
}

func envDuration(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}

// NewNotifier returns the Slack notifier when a bot token is configured,
// else one that logs the command that decides.
func NewNotifier(cfg Config, logger *slog.Logger) (Notifier, error) {
	if cfg.SlackBotToken == "" {
		return &LogNotifier{Logger: logger}, nil
	}
	var opts []approval.Option
	if cfg.SlackAPIURL != "" {
		opts = append(opts, approval.WithAPIURL(cfg.SlackAPIURL))
	}
	if cfg.SlackChannel != "" {
		opts = append(opts, approval.WithDefaultChannel(cfg.SlackChannel))
	}
	return approval.NewNotifier(cfg.SlackBotToken, opts...)
}

func (c *Config) defaults() {
	// TemporalAddress and TemporalNamespace stay empty when unset: Dial
	// takes them from the SDK's environment configuration (profiles in
	// temporal.toml included) and only then from the defaults.
	if c.JobVaultAddr == "" {
		c.JobVaultAddr = c.VaultAddr
	}
	if c.TaskQueue == "" {
		c.TaskQueue = contract.TaskQueue
	}
	if c.MetricsAddr == "" {
		c.MetricsAddr = ":9090"
	}
	if c.Codec.VaultAddr == "" {
		c.Codec.VaultAddr = c.VaultAddr
	}
	if c.Codec.VaultToken == "" {
		c.Codec.VaultToken = c.VaultToken
	}
	if c.Kube.QPS == 0 {
		c.Kube.QPS = DefaultKubeQPS
	}
	if c.Kube.Burst == 0 {
		c.Kube.Burst = DefaultKubeBurst
	}
	if c.MaxConcurrentActivities == 0 {
		c.MaxConcurrentActivities = DefaultMaxConcurrentActivities
	}
	if c.WorkflowCacheSize == 0 {
		c.WorkflowCacheSize = 1000
	}
	if c.ActionTokenTTL == 0 {
		c.ActionTokenTTL = 5 * time.Minute
	}
	if c.LeaseFuse == 0 {
		c.LeaseFuse = activities.DefaultLeaseFuse
	}
}

// RestConfig loads a kubeconfig file, or the in-cluster config when path is
// empty, with the client-side rate limit set from limits (zero values take
// the defaults, never client-go's 5 requests/s).
func RestConfig(path string, limits KubeLimits) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("kubernetes config: no KUBECONFIG and not in a cluster: %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", path); err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = limits.QPS, limits.Burst
	if cfg.QPS == 0 {
		cfg.QPS = DefaultKubeQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultKubeBurst
	}
	if cfg.QPS < 0 {
		cfg.QPS = -1 // client-go: no client-side limiter at all
	}
	cfg.UserAgent = "airlock-worker"
	return cfg, nil
}

// NewActivities builds the activities' clients from the configuration. The
// returned close function ends the Vault session and agent tokens' renewal.
func NewActivities(ctx context.Context, cfg Config) (*activities.Activities, func(), error) {
	cfg.defaults()
	acts, err := newActivities(cfg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.VaultAuth.Method == "" {
		cfg.VaultAuth.Method = vault.AuthToken
	}
	sess, err := vault.Login(ctx, vault.Config{Address: cfg.VaultAddr, Token: cfg.VaultToken, TokenRole: cfg.VaultTokenRole}, cfg.VaultAuth)
	if err != nil {
		return nil, nil, err
	}
	agents, err := vault.NewAgentTokens(sess.Broker, vault.AgentConfig{RenewalTTL: cfg.ActionTokenTTL})
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	acts.Broker, acts.Agents = sess.Broker, agents
	acts.Identity = vault.NewVerifier(sess.Broker) // verify agents' request signatures (never sign)
	// Sign cycles' audit-trail heads (transit/sign/airlock-audit).
	acts.AuditSigner = vault.NewAuditSigner(sess.Broker)
	return acts, func() { agents.Close(); sess.Close() }, nil
}

func newActivities(cfg Config) (*activities.Activities, error) {
	cfg.defaults()
	if cfg.CatalogPath == "" {
		return nil, errors.New("no catalog: set AIRLOCK_CATALOG or --catalog")
	}
	cat, err := policy.LoadFile(cfg.CatalogPath)
	if err != nil {
		return nil, err
	}
	rc, err := RestConfig(cfg.Kubeconfig, cfg.Kube)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &activities.Activities{Catalog: cat, Jobs: k8s.NewRunner(cs), JobVaultAddr: cfg.JobVaultAddr,
		LeaseFuse: cfg.LeaseFuse, ActionTokenTTL: cfg.ActionTokenTTL,
		CredentialMaxTTL: cfg.CredentialMaxTTL, RotateAt: cfg.RotateAt, RotationGrace: cfg.RotationGrace}, nil
}

// New registers Airlock's workflows and activities on a worker. A nil
// notifier logs instead of posting to Slack; cycle metrics go to
// acts.Metrics (nil records nothing). Activities without a Temporal client
// get c: they read and report to the agents' Agent workflows with it.
func New(c client.Client, cfg Config, acts *activities.Activities, n Notifier) sdkworker.Worker {
	cfg.defaults()
	if acts.Temporal == nil {
		acts.Temporal = c
	}
	w := sdkworker.New(c, cfg.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize: cfg.MaxConcurrentActivities,
		// Activities heartbeat three times per heartbeat timeout from a
		// goroutine of their own (activities/heartbeat.go); the SDK otherwise
		// holds them back up to 0.8 × the timeout, which leaves 2 s for a
		// heartbeat to land under a 10 s timeout.
		MaxHeartbeatThrottleInterval: 4 * time.Second,
		// Enough pollers that a new cycle's first workflow task is picked up
		// at once while others poll the sticky queue (the SDK's 2 leave it
		// waiting for a free poller: ≈ 5 ms of every cycle on a quiet worker).
		MaxConcurrentWorkflowTaskPollers: 8,
		MaxConcurrentActivityTaskPollers: 8,
		Interceptors:                     []interceptor.WorkerInterceptor{&killCounter{acts: acts}}, // observe.go
	})
	Register(w, acts, n)
	return observe(w, c, acts)
}

type registry interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
	RegisterActivity(any)
	RegisterActivityWithOptions(any, activity.RegisterOptions)
}

// Register adds Airlock's workflows and activities to any registry (a
// worker or a test environment).
func Register(r registry, acts *activities.Activities, n Notifier) {
	if n == nil {
		n = &LogNotifier{}
	}
	r.RegisterWorkflowWithOptions(workflows.AgentCycle, workflow.RegisterOptions{Name: contract.CycleWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.ShadowFeedback, workflow.RegisterOptions{Name: contract.FeedbackWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Agent, workflow.RegisterOptions{Name: contract.AgentWorkflowName})
	r.RegisterActivity(acts)
	registerNotifier(r, n, acts)
}

// Run connects everything and runs a worker until ctx is done.
func Run(ctx context.Context, cfg Config, tel *telemetry.Telemetry) error {
	cfg.defaults()
	logger := tel.Logger
	acts, closeActs, err := NewActivities(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeActs()
	acts.Metrics = tel.Metrics
	cc := ClientConfig{Address: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, Logger: logger, Telemetry: tel}
	if !cfg.PlainPayloads {
		if cc.Codec, err = NewCodec(ctx, cfg.Codec, false); err != nil {
			return fmt.Errorf("payload codec (AIRLOCK_PLAIN_PAYLOADS=true turns it off): %w", err)
		}
	}
	c, err := Dial(ctx, cc)
	if err != nil {
		return err
	}
	defer c.Close()
	n, err := NewNotifier(cfg, logger)
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "off" {
		srv := &http.Server{Addr: cfg.MetricsAddr, Handler: tel.PrometheusHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics endpoint", "addr", cfg.MetricsAddr, "error", err)
			}
		}()
		defer srv.Close()
	}
	// Process-wide; set before the first worker starts.
	sdkworker.SetStickyWorkflowCacheSize(cfg.WorkflowCacheSize)
	w := New(c, cfg, acts, n)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()
	for _, w := range CatalogWarnings(acts.Catalog) {
		logger.Warn("catalog", "warning", w)
	}
	logger.Info("worker started", "task_queue", cfg.TaskQueue,
		"vault", cfg.VaultAddr, "agents", acts.Catalog.AgentIDs(), "encrypted_payloads", cc.Codec != nil, "metrics", cfg.MetricsAddr)
	<-ctx.Done()
	return nil
}
