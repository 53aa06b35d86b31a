package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/airlockhq/airlock/telemetry"

	"github.com/airlockhq/airlock/worker"
)

func runWorker(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := worker.FromEnv()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.TemporalAddress, "temporal-address", cfg.TemporalAddress, temporalAddressUsage)
	fs.StringVar(&cfg.TemporalNamespace, "namespace", cfg.TemporalNamespace, temporalNamespaceUsage)
	fs.StringVar(&cfg.VaultAddr, "vault-addr", cfg.VaultAddr, "Vault address (env VAULT_ADDR); the token comes from VAULT_TOKEN only")
	fs.StringVar(&cfg.VaultTokenRole, "vault-token-role", cfg.VaultTokenRole, "Vault token role for action tokens (env AIRLOCK_VAULT_TOKEN_ROLE)")
	fs.StringVar(&cfg.JobVaultAddr, "job-vault-addr", cfg.JobVaultAddr, "VAULT_ADDR given to action Jobs (env AIRLOCK_JOB_VAULT_ADDR)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "kubeconfig path; empty = in-cluster (env KUBECONFIG)")
	fs.StringVar(&cfg.CatalogPath, "catalog", cfg.CatalogPath, "agent and action catalog YAML (env AIRLOCK_CATALOG)")
	fs.StringVar(&cfg.SlackAPIURL, "slack-api-url", cfg.SlackAPIURL, "Slack Web API URL (env SLACK_API_URL); the bot token comes from SLACK_BOT_TOKEN only")
	fs.StringVar(&cfg.SlackChannel, "slack-channel", cfg.SlackChannel, "default approval channel (env AIRLOCK_SLACK_CHANNEL)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "Prometheus /metrics address, or off (env AIRLOCK_METRICS_ADDR; default :9090)")
	fs.BoolVar(&cfg.PlainPayloads, "plain-payloads", cfg.PlainPayloads, "do not encrypt payloads (env AIRLOCK_PLAIN_PAYLOADS=true)")
	kubeQPS := fs.Float64("kube-qps", float64(cfg.Kube.QPS), "Kubernetes client requests/s, negative = no client-side limit (env AIRLOCK_KUBE_QPS; default 500)")
	fs.IntVar(&cfg.Kube.Burst, "kube-burst", cfg.Kube.Burst, "Kubernetes client burst (env AIRLOCK_KUBE_BURST; default 1000)")
	fs.IntVar(&cfg.MaxConcurrentActivities, "max-concurrent-activities", cfg.MaxConcurrentActivities, "activities one worker runs at once (env AIRLOCK_MAX_CONCURRENT_ACTIVITIES; default 1000)")
	fs.IntVar(&cfg.WorkflowCacheSize, "workflow-cache-size", cfg.WorkflowCacheSize, "workflows kept in memory; waiting cycles past it are replayed on demand (env AIRLOCK_WORKFLOW_CACHE_SIZE; default 1000)")
	fs.DurationVar(&cfg.ActionTokenTTL, "action-token-ttl", cfg.ActionTokenTTL, "TTL action tokens are renewed to while their Job runs (env AIRLOCK_ACTION_TOKEN_TTL; default 5m)")
	fs.DurationVar(&cfg.LeaseFuse, "lease-fuse", cfg.LeaseFuse, "TTL of an action token until staging has recorded it (env AIRLOCK_LEASE_FUSE; default 10s)")
	logFormat := fs.String("log-format", envOr("AIRLOCK_LOG_FORMAT", "json"), "json or text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Kube.QPS = float32(*kubeQPS)
	var level slog.Level
	if err := level.UnmarshalText([]byte(envOr("AIRLOCK_LOG_LEVEL", "info"))); err != nil {
		return fmt.Errorf("AIRLOCK_LOG_LEVEL: %w", err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-worker", LogFormat: *logFormat, LogWriter: stderr, LogLevel: level})
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
