package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

type bootstrapOptions struct {
	catalog, kubeconfig, vaultAddr string
}

func newBootstrapCmd() *cobra.Command {
	var o bootstrapOptions
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Dev/demo setup for a catalog: Vault policies, token roles, agent keys, namespaces",
		Long: `Prepare a development or demo installation for a catalog, as "airlock dev" does
for its own stack: dev Vault policies and the token roles actions lease from,
each agent's signing key and AppRole login, the payload encryption key, and
each agent's namespace. docker-compose runs it once before the worker. Production installs use deploy/ (reviewed Vault policies) instead.

Environment: VAULT_TOKEN (a token allowed to write policies and mounts).`,
		Example: `  VAULT_TOKEN=root airlock bootstrap --catalog deploy/catalog.yaml --vault-addr http://127.0.0.1:8200`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBootstrap(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.catalog, "catalog", os.Getenv("AIRLOCK_CATALOG"), "catalog whose agents and action types are set up (required; env AIRLOCK_CATALOG)")
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), kubeconfigUsage)
	cmd.Flags().StringVar(&o.vaultAddr, "vault-addr", os.Getenv("VAULT_ADDR"), vaultAddrUsage)
	_ = cmd.MarkFlagFilename("catalog", "yaml", "yml")
	_ = cmd.MarkFlagFilename("kubeconfig")
	return cmd
}

// runBootstrap prepares a development or demo installation for a catalog,
// as `airlock dev` does for its own stack: dev Vault policies and the token
// roles actions lease from, each agent's signing key and login, the payload
// key, and each agent's namespace. docker-compose runs it once before the
// worker. Production installs use deploy/ (reviewed Vault policies) instead.
func runBootstrap(ctx context.Context, o bootstrapOptions, stdout io.Writer) error {
	if o.catalog == "" {
		return fmt.Errorf("bootstrap: no catalog: set AIRLOCK_CATALOG or --catalog")
	}
	cat, err := policy.LoadFile(o.catalog)
	if err != nil {
		return err
	}
	broker, err := vault.NewBroker(vault.Config{Address: o.vaultAddr, Token: os.Getenv("VAULT_TOKEN")})
	if err != nil {
		return err
	}
	rc, err := worker.RestConfig(o.kubeconfig, worker.KubeLimits{})
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
	if _, err := worker.NewCodec(ctx, worker.CodecConfig{VaultAddr: o.vaultAddr, VaultToken: os.Getenv("VAULT_TOKEN")}, true); err != nil {
		return fmt.Errorf("bootstrap: payload key: %w", err)
	}
	fmt.Fprintf(stdout, "bootstrapped %d agents (%v) and %d action types: Vault policies, token roles, agent signing keys and logins, payload key, agent namespaces\n",
		len(cat.AgentIDs()), cat.AgentIDs(), len(cat.Actions))
	return nil
}
