package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/worker"
)

func newWorkerCmd() *cobra.Command {
	// Flags default to the environment, as the worker read it before flags.
	cfg := worker.FromEnv()
	var logFormat string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: the cycle and agent workflows and their activities",
		Long: `Run an Airlock worker on its Temporal task queue: the AgentCycle and Agent
workflows, and the activities that lease Vault credentials, run actions as
Kubernetes Jobs, post Slack approvals and revoke what they leased. Run several
for availability; each serves Prometheus metrics on --metrics-addr.

Every flag defaults to its environment variable. Secrets come from the
environment only: VAULT_TOKEN (or VAULT_AUTH_METHOD kubernetes|approle with
VAULT_AUTH_*), SLACK_BOT_TOKEN, TEMPORAL_API_KEY. AIRLOCK_LOG_LEVEL sets the
log level (debug, info, warn, error).`,
		Example: `  TEMPORAL_ADDRESS=127.0.0.1:7233 VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=... \
    airlock worker --catalog deploy/catalog.yaml --kubeconfig ~/.kube/config --log-format text`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWorker(cmd.Context(), cfg, logFormat, cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.TemporalAddress, "temporal-address", cfg.TemporalAddress, temporalAddressUsage)
	fs.StringVar(&cfg.TemporalNamespace, "namespace", cfg.TemporalNamespace, temporalNamespaceUsage)
	fs.StringVar(&cfg.VaultAddr, "vault-addr", cfg.VaultAddr, vaultAddrUsage)
	fs.StringVar(&cfg.VaultTokenRole, "vault-token-role", cfg.VaultTokenRole, "Vault token role for action tokens (env AIRLOCK_VAULT_TOKEN_ROLE)")
	fs.StringVar(&cfg.JobVaultAddr, "job-vault-addr", cfg.JobVaultAddr, "VAULT_ADDR given to action Jobs (env AIRLOCK_JOB_VAULT_ADDR)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, kubeconfigUsage)
	fs.StringVar(&cfg.CatalogPath, "catalog", cfg.CatalogPath, "catalog of agents and action types this worker enforces (required; env AIRLOCK_CATALOG)")
	fs.StringVar(&cfg.SlackAPIURL, "slack-api-url", cfg.SlackAPIURL, "Slack Web API URL (env SLACK_API_URL); the bot token comes from SLACK_BOT_TOKEN only")
	fs.StringVar(&cfg.SlackChannel, "slack-channel", cfg.SlackChannel, "default approval channel (env AIRLOCK_SLACK_CHANNEL)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "Prometheus /metrics address, or off (env AIRLOCK_METRICS_ADDR; default :9090)")
	fs.BoolVar(&cfg.PlainPayloads, "plain-payloads", cfg.PlainPayloads, "do not encrypt payloads (env AIRLOCK_PLAIN_PAYLOADS=true)")
	fs.Float32Var(&cfg.Kube.QPS, "kube-qps", cfg.Kube.QPS, "Kubernetes client requests/s, negative = no client-side limit (env AIRLOCK_KUBE_QPS; default 500)")
	fs.IntVar(&cfg.Kube.Burst, "kube-burst", cfg.Kube.Burst, "Kubernetes client burst (env AIRLOCK_KUBE_BURST; default 1000)")
	fs.IntVar(&cfg.MaxConcurrentActivities, "max-concurrent-activities", cfg.MaxConcurrentActivities, "activities one worker runs at once (env AIRLOCK_MAX_CONCURRENT_ACTIVITIES; default 1000)")
	fs.IntVar(&cfg.WorkflowCacheSize, "workflow-cache-size", cfg.WorkflowCacheSize, "workflows kept in memory; waiting cycles past it are replayed on demand (env AIRLOCK_WORKFLOW_CACHE_SIZE; default 1000)")
	fs.DurationVar(&cfg.ActionTokenTTL, "action-token-ttl", cfg.ActionTokenTTL, "TTL action tokens are renewed to while their Job runs (env AIRLOCK_ACTION_TOKEN_TTL; default 5m)")
	fs.DurationVar(&cfg.LeaseFuse, "lease-fuse", cfg.LeaseFuse, "TTL of an action token until staging has recorded it (env AIRLOCK_LEASE_FUSE; default 10s)")
	addLogFormat(cmd, &logFormat)
	_ = cmd.MarkFlagFilename("catalog", "yaml", "yml")
	_ = cmd.MarkFlagFilename("kubeconfig")
	return cmd
}

func runWorker(ctx context.Context, cfg worker.Config, logFormat string, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(envOr("AIRLOCK_LOG_LEVEL", "info"))); err != nil {
		return fmt.Errorf("AIRLOCK_LOG_LEVEL: %w", err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-worker", LogFormat: logFormat, LogWriter: stderr, LogLevel: level})
	if err != nil {
		return err
	}
	defer shutdown(tel)
	slog.SetDefault(tel.Logger)
	return worker.Run(ctx, cfg, tel)
}

// shutdown flushes telemetry on a fresh context: ctx is already done.
func shutdown(tel *telemetry.Telemetry) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tel.Shutdown(ctx)
}
