package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

// runBootstrap prepares a development or demo installation for a catalog,
// as `airlock dev` does for its own stack: dev Vault policies and the token
// roles actions lease from, each agent's signing key and login, the payload
// key, and each agent's namespace. docker-compose runs it once before the
// worker. Production installs use deploy/ (reviewed Vault policies) instead.
func runBootstrap(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	catalog := fs.String("catalog", os.Getenv("AIRLOCK_CATALOG"), "agent and action catalog YAML (env AIRLOCK_CATALOG)")
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig path; empty = in-cluster (env KUBECONFIG)")
	vaultAddr := fs.String("vault-addr", os.Getenv("VAULT_ADDR"), "Vault address (env VAULT_ADDR); the token comes from VAULT_TOKEN only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *catalog == "" {
		return fmt.Errorf("bootstrap: no catalog: set AIRLOCK_CATALOG or --catalog")
	}
	cat, err := policy.LoadFile(*catalog)
	if err != nil {
		return err
	}
	broker, err := vault.NewBroker(vault.Config{Address: *vaultAddr, Token: os.Getenv("VAULT_TOKEN")})
	if err != nil {
		return err
	}
	rc, err := worker.RestConfig(*kubeconfig, worker.KubeLimits{})
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if err := devsetup.Prepare(ctx, cat, broker, k8s.NewRunner(cs)); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	// The payload key the worker, CLI and codec server encrypt with.
	if _, err := worker.NewCodec(ctx, worker.CodecConfig{VaultAddr: *vaultAddr, VaultToken: os.Getenv("VAULT_TOKEN")}, true); err != nil {
		return fmt.Errorf("bootstrap: payload key: %w", err)
	}
	fmt.Fprintf(stdout, "bootstrapped %d agents (%v) and %d action types: Vault policies, token roles, agent signing keys and logins, payload key, agent namespaces\n",
		len(cat.AgentIDs()), cat.AgentIDs(), len(cat.Actions))
	return nil
}
