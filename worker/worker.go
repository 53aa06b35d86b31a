// Package worker builds the Temporal client and worker that run Airlock's
// workflows and activities, from configuration that comes from env or flags.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/airlockhq/airlock/activities"
	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
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
	JobVaultAddr      string // AIRLOCK_JOB_VAULT_ADDR: VAULT_ADDR inside Jobs. Default: VaultAddr
	Kubeconfig        string // KUBECONFIG; empty means in-cluster config
	CatalogPath       string // AIRLOCK_CATALOG
	TaskQueue         string // Default: workflows.TaskQueue
	SlackBotToken     string // SLACK_BOT_TOKEN; empty: log instead of posting. Never logged
	SlackAPIURL       string // SLACK_API_URL. Default: Slack's
	SlackChannel      string // AIRLOCK_SLACK_CHANNEL: default channel when an agent names none
}

// FromEnv reads the configuration from the environment.
func FromEnv() Config {
	return Config{
		TemporalAddress:   os.Getenv("TEMPORAL_ADDRESS"),
		TemporalNamespace: os.Getenv("TEMPORAL_NAMESPACE"),
		VaultAddr:         os.Getenv("VAULT_ADDR"),
		VaultToken:        os.Getenv("VAULT_TOKEN"),
		VaultTokenRole:    os.Getenv("AIRLOCK_VAULT_TOKEN_ROLE"),
		JobVaultAddr:      os.Getenv("AIRLOCK_JOB_VAULT_ADDR"),
		Kubeconfig:        os.Getenv("KUBECONFIG"),
		CatalogPath:       os.Getenv("AIRLOCK_CATALOG"),
		SlackBotToken:     os.Getenv("SLACK_BOT_TOKEN"),
		SlackAPIURL:       os.Getenv("SLACK_API_URL"),
		SlackChannel:      os.Getenv("AIRLOCK_SLACK_CHANNEL"),
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
}

// Dial connects a Temporal client configured the way every Airlock process
// (worker, starter, CLI) must use it.
func Dial(ctx context.Context, address, namespace string, logger *slog.Logger) (client.Client, error) {
	if address == "" {
		address = "127.0.0.1:7233"
	}
	if logger == nil {
		logger = slog.Default()
	}
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  address,
		Namespace: namespace,
		Logger:    log.NewStructuredLogger(logger),
	})
	if err != nil {
		return nil, fmt.Errorf("dial temporal %s: %w", address, err)
	}
	return c, nil
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

// NewActivities builds the activities' clients from the configuration.
func NewActivities(cfg Config) (*activities.Activities, error) {
	cfg.defaults()
	if cfg.CatalogPath == "" {
		return nil, errors.New("no catalog: set AIRLOCK_CATALOG or --catalog")
	}
	cat, err := policy.LoadFile(cfg.CatalogPath)
	if err != nil {
		return nil, err
	}
	broker, err := vault.NewBroker(vault.Config{Address: cfg.VaultAddr, Token: cfg.VaultToken, TokenRole: cfg.VaultTokenRole})
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
	return &activities.Activities{Catalog: cat, Broker: broker, Jobs: k8s.NewRunner(cs), JobVaultAddr: cfg.JobVaultAddr}, nil
}

// New registers Airlock's workflows and activities on a worker. A nil
// notifier logs instead of posting to Slack.
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
	r.RegisterWorkflowWithOptions(workflows.AgentCycle, workflow.RegisterOptions{Name: workflows.CycleWorkflowName})
	r.RegisterActivity(acts)
	registerNotifier(r, n)
}

// Run connects everything and runs a worker until ctx is done.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg.defaults()
	acts, err := NewActivities(cfg)
	if err != nil {
		return err
	}
	c, err := Dial(ctx, cfg.TemporalAddress, cfg.TemporalNamespace, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	n, err := NewNotifier(cfg, logger)
	if err != nil {
		return err
	}
	w := New(c, cfg.TaskQueue, acts, n)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()
	logger.Info("worker started", "task_queue", cfg.TaskQueue, "temporal", cfg.TemporalAddress,
		"vault", cfg.VaultAddr, "agents", acts.Catalog.AgentIDs())
	<-ctx.Done()
	return nil
}
