package main

import (
	"context"
	"flag"
	"io"

	"github.com/airlockhq/airlock/worker"
)

func runWorker(ctx context.Context, args []string, stderr io.Writer) error {
	cfg := worker.FromEnv()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.TemporalAddress, "temporal-address", cfg.TemporalAddress, "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&cfg.TemporalNamespace, "namespace", cfg.TemporalNamespace, "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&cfg.VaultAddr, "vault-addr", cfg.VaultAddr, "Vault address (env VAULT_ADDR); the token comes from VAULT_TOKEN only")
	fs.StringVar(&cfg.VaultTokenRole, "vault-token-role", cfg.VaultTokenRole, "Vault token role for action tokens (env AIRLOCK_VAULT_TOKEN_ROLE)")
	fs.StringVar(&cfg.JobVaultAddr, "job-vault-addr", cfg.JobVaultAddr, "VAULT_ADDR given to action Jobs (env AIRLOCK_JOB_VAULT_ADDR)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "kubeconfig path; empty = in-cluster (env KUBECONFIG)")
	fs.StringVar(&cfg.CatalogPath, "catalog", cfg.CatalogPath, "agent and action catalog YAML (env AIRLOCK_CATALOG)")
	logFormat := fs.String("log-format", envOr("AIRLOCK_LOG_FORMAT", "json"), "json or text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return worker.Run(ctx, cfg, newLogger(stderr, *logFormat))
}
