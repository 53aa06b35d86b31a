package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/internal/devenv"
	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

// busyboxImage matches a catalog's busybox image pinned by digest.
var busyboxImage = regexp.MustCompile(`(?m)^(\s*image:\s*)\S*busybox@sha256:[0-9a-f]{64}\s*$`)

// realNodeCatalog writes a copy of the catalog at path whose busybox images
// are the real node's own (no registry is reachable) and returns its path.
func realNodeCatalog(path string, stack *devstack.Stack) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	out := filepath.Join(stack.Dir, "catalog.yaml")
	b = busyboxImage.ReplaceAll(b, []byte("${1}"+stack.BusyboxImage))
	return out, os.WriteFile(out, b, 0o600)
}

type devOptions struct {
	catalog, request string
	uiPort           int
	exit, realNode   bool
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start Temporal, Vault, Kubernetes (kwok) and a worker locally; run sample cycles",
		Long: `Start a local stack — Temporal with its Web UI, Vault in dev mode, a Kubernetes
apiserver with kwok's simulated node (or a real node with --real-node) — and a
worker, prepare the catalog's agents, then run the sample request under an
autonomous, a shadow and an advisory agent. The Temporal UI decrypts payloads
through a local codec server, and a local approvals endpoint takes the same
signed clicks as Slack's. Prints the exports that point the other commands at
the stack, and the approval click for the advisory cycle's waiting action.
Ctrl-C stops everything.`,
		Example: `  airlock dev
  airlock dev --exit                 # run the samples, approve the advisory one, then stop
  sudo airlock dev --real-node       # Jobs in real containers (Linux)`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.catalog, "catalog", "deploy/catalog.yaml", "catalog the dev worker enforces and prepares agents for")
	cmd.Flags().StringVar(&o.request, "request", "examples/cycle-request.json", "sample cycle request to run under each demo agent once the stack is up")
	cmd.Flags().IntVar(&o.uiPort, "ui-port", 8233, "Temporal Web UI port (a free port if taken)")
	cmd.Flags().BoolVar(&o.exit, "exit", false, "approve the advisory cycle's waiting action with a signed click (as a human would in Slack), wait for it, then stop instead of waiting for Ctrl-C")
	cmd.Flags().BoolVar(&o.realNode, "real-node", false, "run Jobs in real containers on a local node (containerd, kubelet, kube-router; root on Linux) instead of kwok's simulated one")
	_ = cmd.MarkFlagFilename("catalog", "yaml", "yml")
	_ = cmd.MarkFlagFilename("request", "json")
	return cmd
}

func runDev(ctx context.Context, o devOptions, stdout io.Writer) error {
	if o.realNode {
		if err := devstack.RealNodeSupported(); err != nil {
			return fmt.Errorf("--real-node: %w", err)
		}
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, "airlock dev: "+format+"\n", a...) }

	port := o.uiPort
	if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		port = 0
	} else {
		l.Close()
	}
	start := time.Now()
	// The UI is started with the codec server's URL: payloads are readable
	// in it with no manual step.
	codecLn, codecURL, err := devenv.CodecListener()
	if err != nil {
		return err
	}
	defer codecLn.Close()
	stack, err := devstack.Start(ctx, devstack.Options{
		Temporal: true, Vault: true, Kube: true, RealNode: o.realNode, TemporalUIPort: port, TemporalUICodecEndpoint: codecURL,
		Logf: func(f string, a ...any) { say(f, a...) },
	})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the stack")
		stack.Stop()
	}()
	say("stack up in %s", time.Since(start).Round(10*time.Millisecond))

	catPath, _ := filepath.Abs(o.catalog)
	cfg := worker.Config{
		TemporalAddress: stack.TemporalAddress, VaultAddr: stack.VaultAddr, VaultToken: stack.VaultToken,
		Kubeconfig: stack.Kubeconfig, CatalogPath: catPath,
	}
	if o.realNode {
		if cfg.CatalogPath, err = realNodeCatalog(catPath, stack); err != nil {
			return err
		}
		// Pods reach Vault at this host's Pod-network address.
		addr, err := stack.ExposeToPods(strings.TrimPrefix(stack.VaultAddr, "http://"))
		if err != nil {
			return err
		}
		cfg.JobVaultAddr = "http://" + addr
	}
	acts, closeActs, err := worker.NewActivities(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeActs()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-dev", LogWriter: io.Discard})
	if err != nil {
		return err
	}
	defer shutdown(tel)
	acts.Metrics = tel.Metrics
	cod, err := worker.NewCodec(ctx, worker.CodecConfig{VaultAddr: stack.VaultAddr, VaultToken: stack.VaultToken}, true)
	if err != nil {
		return err
	}
	if err := devsetup.Prepare(ctx, acts.Catalog, acts.Broker, acts.Jobs); err != nil {
		return err
	}
	identities, err := devsetup.AgentIdentities(ctx, acts.Catalog, acts.Broker)
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(stack.Dir, "worker.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	tel.Logger = newLogger(logFile, "json")
	tc, err := worker.Dial(ctx, worker.ClientConfig{Address: stack.TemporalAddress, Logger: tel.Logger, Telemetry: tel, Codec: cod})
	if err != nil {
		return err
	}
	defer tc.Close()
	w := worker.New(tc, cfg, acts, &worker.LogNotifier{Logger: tel.Logger})
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	defer w.Stop()
	decider := starter.New(tc, starter.WithCatalog(acts.Catalog))
	servers, err := devenv.Start(devenv.Config{CodecListener: codecLn, Codec: cod, UIURL: stack.TemporalUIURL, Logger: tel.Logger,
		Approvals: approval.HandlerConfig{Decider: approval.DeciderFunc(decider.Decide), Killer: approval.KillerFunc(decider.RequestKill), Promoter: approval.PromoterFunc(decider.Promote)}})
	if err != nil {
		return err
	}
	defer servers.Close()

	var closers []func() // agents' Vault sessions
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if o.realNode {
		say("Kubernetes runs a REAL node here (containerd, kubelet, kube-router enforcing NetworkPolicies): Jobs run in real containers; their output is in `kubectl logs`. Busybox images in the catalog run the node's locally built busybox (%s): there is no registry.", stack.BusyboxImage)
	} else {
		say("Kubernetes nodes are SIMULATED by kwok here: Jobs are created, admitted and scheduled for real, but no container runs. Give the worker a real KUBECONFIG (with VAULT_ADDR and TEMPORAL_ADDRESS) to run Jobs on a cluster, or run `airlock dev --real-node` as root on Linux.")
	}
	fmt.Fprintf(stdout, `
  Temporal UI      %s
  export TEMPORAL_ADDRESS=%s
  export VAULT_ADDR=%s VAULT_TOKEN=%s   # dev root token
  export KUBECONFIG=%s
  export AIRLOCK_CATALOG=%s
  worker log       %s
`, stack.TemporalUIURL, stack.TemporalAddress, stack.VaultAddr, stack.VaultToken, stack.Kubeconfig, cfg.CatalogPath, logFile.Name())
	servers.PrintServers(stdout, stack.TemporalUIURL)
	fmt.Fprintln(stdout)

	req, err := readRequest(o.request)
	if err != nil {
		return err
	}
	if id, ok := identities[req.AgentID]; ok {
		printAgentLogin(stdout, id)
	}
	// Each agent proves who it is: it logs in to Vault through its own
	// AppRole and signs its requests with its own Transit key.
	starters := map[string]*starter.Client{}
	agentStarter := func(agentID string) (*starter.Client, error) {
		if st, ok := starters[agentID]; ok {
			return st, nil
		}
		sess, err := loginAsAgent(ctx, acts.Broker, stack.VaultAddr, filepath.Join(stack.Dir, "agent-"+agentID+".secret-id"), identities[agentID])
		if err != nil {
			return nil, err
		}
		closers = append(closers, sess.Close)
		st := starter.New(tc, starter.WithCatalog(acts.Catalog), starter.WithSigner(sess.Signer()))
		starters[agentID] = st
		return st, nil
	}
	stamp := time.Now().Unix()
	// The same proposal under three agents shows the trust phases.
	for _, demo := range []struct{ agent, what string }{
		{req.AgentID, "autonomous: reads and writes run"},
		{"shadow-bot", "shadow: reads run, writes are dry-run against the apiserver and recorded as 'would do'"},
	} {
		r := req
		r.AgentID, r.CycleID = demo.agent, fmt.Sprintf("dev-%d", stamp)
		st, err := agentStarter(r.AgentID)
		if err != nil {
			return err
		}
		run, err := st.Start(ctx, r)
		if err != nil {
			return err
		}
		say("%s — cycle %s", demo.what, run.WorkflowID)
		say("  watch it: %s", workflowURL(stack.TemporalUIURL, run.WorkflowID))
		res, err := run.Get(ctx)
		if err != nil {
			return fmt.Errorf("cycle %s: %w", run.WorkflowID, err)
		}
		printResult(stdout, res)
		say("cycle %s: %s", res.WorkflowID, res.Outcome)
	}
	adv := req
	adv.AgentID, adv.CycleID = "advisor", fmt.Sprintf("dev-%d", stamp)
	st, err := agentStarter(adv.AgentID)
	if err != nil {
		return err
	}
	run, err := st.Start(ctx, adv)
	if err != nil {
		return err
	}
	say("advisory: the read runs, then the write waits for a human — cycle %s", run.WorkflowID)
	var waiting []contract.PendingAction
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if p, err := st.Pending(ctx, run.WorkflowID); err == nil && len(p) > 0 {
			say("  waiting: action %d (%s), %s", p[0].Action.Index, p[0].Action.Type, p[0].Action.Decision.Rule)
			waiting = p
			break
		}
	}
	if len(waiting) == 0 || len(waiting[0].Approvers) == 0 {
		return fmt.Errorf("cycle %s: no action waits for approval", run.WorkflowID)
	}
	approver := waiting[0].Approvers[0]
	if err := servers.PrintClick(stdout, waiting[0], contract.DecisionApprove, approver); err != nil {
		return err
	}
	say("  approve it:  go run ./cmd/airlock approve %s --approver %s   (with the exports above)", run.WorkflowID, approver)
	say("  or deny it:  go run ./cmd/airlock deny %s --approver U0APPROVER2", run.WorkflowID)
	say("  what waits:  go run ./cmd/airlock cycle pending")
	if o.exit {
		// No human here: the same signed click, made by this process.
		body, err := devenv.ClickBody(waiting[0], contract.DecisionApprove, approver)
		if err != nil {
			return err
		}
		answer, err := devenv.Click(ctx, servers.ApprovalsURL, servers.SigningSecret, body)
		if err != nil {
			return err
		}
		say("  clicked Approve as %s: %s", approver, answer)
		res, err := run.Get(ctx)
		if err != nil {
			return fmt.Errorf("cycle %s: %w", run.WorkflowID, err)
		}
		printResult(stdout, res)
		say("cycle %s: %s", res.WorkflowID, res.Outcome)
		if res.Outcome != contract.OutcomeSucceeded {
			return fmt.Errorf("cycle %s: %s", res.WorkflowID, res.Outcome)
		}
		return nil
	}
	say("stack is up; try: go run ./cmd/airlock cycle start -f examples/cycle-request.json --wait   (Ctrl-C stops everything)")
	<-ctx.Done()
	return nil
}

// workflowURL links straight to a workflow in the Temporal Web UI.
func workflowURL(ui, workflowID string) string {
	return fmt.Sprintf("%s/namespaces/default/workflows/%s", ui, url.PathEscape(workflowID))
}

// loginAsAgent logs in to Vault as the agent would: a fresh secret id for
// its AppRole (kept in a 0600 file), then an AppRole login. The session's
// token can sign as this agent and nothing else of Airlock's.
func loginAsAgent(ctx context.Context, admin *vault.Broker, vaultAddr, secretFile string, id vault.AgentIdentity) (*vault.Session, error) {
	if id.RoleID == "" {
		return nil, fmt.Errorf("agent %s has no Vault identity", id.AgentID)
	}
	sid, err := admin.AgentSecretID(ctx, id.AgentID)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(secretFile, []byte(sid.Value()), 0o600); err != nil {
		return nil, fmt.Errorf("write secret id: %w", err)
	}
	return vault.Login(ctx, vault.Config{Address: vaultAddr}, vault.LoginConfig{
		Method: vault.AuthAppRole, Mount: id.AppRoleMount, RoleID: id.RoleID, SecretIDFile: secretFile,
	})
}

// printAgentLogin shows how an agent logs in to Vault as itself and signs.
func printAgentLogin(w io.Writer, id vault.AgentIdentity) {
	fmt.Fprintf(w, `  Agents prove who they are (README: "Signing a cycle request from any language").
  Agent %[1]q signs with Transit key %[2]s; it logs in through AppRole %[3]s:
    SECRET_ID=$(curl -s -X POST -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/auth/%[4]s/role/%[5]s/secret-id" | jq -r .data.secret_id)
    export AIRLOCK_AGENT_VAULT_TOKEN=$(curl -s -X POST -d '{"role_id":"%[6]s","secret_id":"'$SECRET_ID'"}' "$VAULT_ADDR/v1/auth/%[4]s/login" | jq -r .auth.client_token)
  then sign and start a cycle as %[1]s (that token can sign as %[1]s only):
    go run ./cmd/airlock cycle start -f examples/cycle-request.json --wait
    VAULT_TOKEN=$AIRLOCK_AGENT_VAULT_TOKEN node examples/sign-request.mjs examples/cycle-request.json   # the same from JavaScript

`, id.AgentID, id.Key, id.AppRoleMount+"/role/"+id.AppRole, id.AppRoleMount, id.AppRole, id.RoleID)
}
