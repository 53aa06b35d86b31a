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
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/workflows"
)

// Config is everything a worker needs. FromEnv fills it from the
// environment; flags override.
type Config struct {
	TemporalAddress   string // TEMPORAL_ADDRESS. Default: 127.0.0.1:7233
	TemporalNamespace string // TEMPORAL_NAMESPACE. Default: default
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
	TaskQueue     string // Default: workflows.TaskQueue
	SlackBotToken string // SLACK_BOT_TOKEN; empty: log instead of posting. Never logged
	SlackAPIURL   string // SLACK_API_URL. Default: Slack's
	SlackChannel  string // AIRLOCK_SLACK_CHANNEL: default channel when an agent names none
	// PlainPayloads turns the payload codec off (AIRLOCK_PLAIN_PAYLOADS=true).
	// Default: payloads are encrypted with keys from Vault Transit.
	PlainPayloads bool
	Codec         CodecConfig
	MetricsAddr   string // AIRLOCK_METRICS_ADDR: Prometheus /metrics. Default: :9090; "off" disables
}

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
	}
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
	if c.TemporalAddress == "" {
		c.TemporalAddress = "127.0.0.1:7233"
	}
	if c.TemporalNamespace == "" {
		c.TemporalNamespace = "default"
	}
	if c.JobVaultAddr == "" {
		c.JobVaultAddr = c.VaultAddr
	}
	if c.TaskQueue == "" {
		c.TaskQueue = workflows.TaskQueue
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
}

// RestConfig loads a kubeconfig file, or the in-cluster config when path is empty.
func RestConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes config: no KUBECONFIG and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// NewActivities builds the activities' clients from the configuration. The
// returned close function ends the Vault session and agent tokens' renewal.
func NewActivities(ctx context.Context, cfg Config) (*activities.Activities, func(), error) {
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
	agents, err := vault.NewAgentTokens(sess.Broker, vault.AgentConfig{RenewalTTL: 5 * time.Minute})
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	acts.Broker, acts.Agents = sess.Broker, agents
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
	rc, err := RestConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &activities.Activities{Catalog: cat, Jobs: k8s.NewRunner(cs), JobVaultAddr: cfg.JobVaultAddr}, nil
}

// New registers Airlock's workflows and activities on a worker. A nil
// notifier logs instead of posting to Slack; cycle metrics go to
// acts.Metrics (nil records nothing).
func New(c client.Client, taskQueue string, acts *activities.Activities, n Notifier) sdkworker.Worker {
	if taskQueue == "" {
		taskQueue = workflows.TaskQueue
	}
	w := sdkworker.New(c, taskQueue, sdkworker.Options{})
	Register(w, acts, n)
	return w
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
	var m workflows.CycleMetrics
	if acts.Metrics != nil {
		m = acts.Metrics
	}
	r.RegisterWorkflowWithOptions(workflows.NewAgentCycle(m), workflow.RegisterOptions{Name: workflows.CycleWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.ShadowFeedback, workflow.RegisterOptions{Name: workflows.FeedbackWorkflowName})
	r.RegisterActivity(acts)
	registerNotifier(r, n)
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
	w := New(c, cfg.TaskQueue, acts, n)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()
	logger.Info("worker started", "task_queue", cfg.TaskQueue, "temporal", cfg.TemporalAddress,
		"vault", cfg.VaultAddr, "agents", acts.Catalog.AgentIDs(), "encrypted_payloads", cc.Codec != nil, "metrics", cfg.MetricsAddr)
	<-ctx.Done()
	return nil
}
