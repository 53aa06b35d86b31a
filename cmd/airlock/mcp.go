package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/mcpserver"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
)

type mcpOptions struct {
	clientFlags
	agent, httpAddr, ui string
	wait, progress      time.Duration
}

func newMCPCmd() *cobra.Command {
	var o mcpOptions
	cmd := &cobra.Command{
		Use:   "mcp --agent <id>",
		Short: "Serve an agent's actions as MCP tools (stdio, or streamable HTTP)",
		Long: `Serve the Model Context Protocol for one agent: each action type the catalog
lets the agent propose is a tool, and calling it proposes a one-action cycle
signed as the agent and answers with its result. airlock_cycle_status and
airlock_pending read cycles. Agent runtimes launch it over stdio (stdout is
the protocol; logs go to stderr), or it serves streamable HTTP with --http.

What runs is decided by Airlock — the catalog, the agent's trust phase, the
approvers — never by the client. Past --wait a call answers "pending" with the
cycle to poll.

Environment:
  AIRLOCK_AGENT_VAULT_TOKEN  the agent's Vault token, to sign as the agent
                             (else VAULT_TOKEN), or instead:
  AIRLOCK_AGENT_AUTH_METHOD  approle or kubernetes: log in to Vault as the agent
                             and keep the token alive (AIRLOCK_AGENT_AUTH_MOUNT,
                             AIRLOCK_AGENT_AUTH_ROLE, AIRLOCK_AGENT_JWT_FILE,
                             AIRLOCK_AGENT_ROLE_ID, AIRLOCK_AGENT_SECRET_ID_FILE)
  AIRLOCK_MCP_TOKEN          bearer token HTTP clients must send; required
                             with --http off loopback. Env only, never a flag.
  VAULT_ADDR, VAULT_TOKEN    Vault; VAULT_TOKEN also decrypts payloads`,
		Example: `  airlock mcp --agent advisor --catalog deploy/catalog.yaml --wait 2m
  AIRLOCK_MCP_TOKEN=... airlock mcp --agent advisor --http 0.0.0.0:8090
  airlock mcp --agent advisor --http 127.0.0.1:8090 --ui http://127.0.0.1:8233`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMCP(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	o.register(cmd.Flags())
	o.registerCatalog(cmd, "catalog whose actions for the agent are the tools, and that each request is validated against (required; env AIRLOCK_CATALOG)")
	fs := cmd.Flags()
	fs.StringVar(&o.agent, "agent", os.Getenv("AIRLOCK_AGENT"), "the agent this server speaks for (env AIRLOCK_AGENT); it signs as this agent with AIRLOCK_AGENT_VAULT_TOKEN (else VAULT_TOKEN)")
	fs.StringVar(&o.httpAddr, "http", "", "serve streamable HTTP on this address (e.g. 127.0.0.1:8090) instead of stdio; off loopback it needs AIRLOCK_MCP_TOKEN (clients send Authorization: Bearer <token>)")
	fs.DurationVar(&o.wait, "wait", mcpserver.DefaultWait, "how long a call waits for its cycle (a human decision included) before it answers \"pending\"")
	fs.DurationVar(&o.progress, "progress", mcpserver.DefaultProgressInterval, "how often a waiting call sends MCP progress notifications (to clients that asked for them)")
	fs.StringVar(&o.ui, "ui", os.Getenv("AIRLOCK_UI_URL"), "Temporal UI base URL for links in results, e.g. http://127.0.0.1:8233 (env AIRLOCK_UI_URL)")
	_ = cmd.RegisterFlagCompletionFunc("agent", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return agentCompletions(o.catalog, toComplete), cobra.ShellCompDirectiveNoFileComp
	})
	for _, f := range []string{"http", "ui", "wait", "progress"} {
		_ = cmd.RegisterFlagCompletionFunc(f, cobra.NoFileCompletions)
	}
	return cmd
}

// runMCP serves one agent's MCP tools over stdio (stdout is the protocol:
// logs go to stderr) or streamable HTTP. All logic is in mcpserver.
func runMCP(ctx context.Context, o mcpOptions, stderr io.Writer) error {
	if o.catalog == "" {
		return errors.New("mcp: the catalog is required: --catalog or AIRLOCK_CATALOG")
	}
	cat, err := policy.LoadFile(o.catalog)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	signer, logout, err := mcpSigner(ctx, o.agent, logger)
	if err != nil {
		return err
	}
	defer logout()
	// Always traced: any call may carry its agent's traceparent (mcpserver),
	// which reaches the workflow through the client's tracing interceptor.
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-mcp", LogFormat: telemetry.LogFormatText, LogWriter: stderr, DisablePrometheus: true})
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	o.tel = tel
	st, done, err := o.starter(ctx, starter.WithSigner(signer), starter.WithTracerProvider(tel.TracerProvider))
	if err != nil {
		return err
	}
	defer done()
	// UI links name the namespace the client dialled: --namespace, else
	// TEMPORAL_NAMESPACE (a temporal.toml profile's is not known here).
	namespace := o.namespace
	if namespace == "" {
		namespace = os.Getenv("TEMPORAL_NAMESPACE")
	}
	srv, err := mcpserver.New(mcpserver.Config{AgentID: o.agent, Catalog: cat, Cycles: st, Wait: o.wait, ProgressInterval: o.progress, UIBaseURL: o.ui,
		Namespace: namespace, Logger: logger,
		Traceparent: os.Getenv(telemetry.EnvTraceParent), Tracestate: os.Getenv("TRACESTATE")})
	if err != nil {
		return err
	}
	if o.httpAddr == "" {
		return srv.RunStdio(ctx)
	}
	token := os.Getenv("AIRLOCK_MCP_TOKEN")
	if host, _, err := net.SplitHostPort(o.httpAddr); err != nil {
		return fmt.Errorf("mcp: --http %q: %w", o.httpAddr, err)
	} else if ip := net.ParseIP(host); token == "" && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Errorf("mcp: --http %s is reachable from other hosts and anyone reaching it acts as agent %s: set AIRLOCK_MCP_TOKEN or listen on 127.0.0.1", o.httpAddr, o.agent)
	}
	hs := &http.Server{Addr: o.httpAddr, Handler: srv.HTTPHandler(token), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shut)
	}()
	logger.Info("serving MCP over streamable HTTP", "addr", o.httpAddr, "agent", o.agent)
	if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// mcpSigner signs as the agent. With AIRLOCK_AGENT_AUTH_METHOD (approle or
// kubernetes) the server logs in to Vault as the agent and keeps that token
// alive for as long as it runs; otherwise it signs with the agent's token
// (agentSigner), which stops working when it expires.
func mcpSigner(ctx context.Context, agent string, logger *slog.Logger) (starter.Signer, func(), error) {
	method := os.Getenv("AIRLOCK_AGENT_AUTH_METHOD")
	if method == "" {
		if envOr("AIRLOCK_AGENT_VAULT_TOKEN", os.Getenv("VAULT_TOKEN")) == "" {
			return nil, nil, fmt.Errorf("mcp: nothing to sign as agent %q with: set AIRLOCK_AGENT_AUTH_METHOD (approle, kubernetes) or AIRLOCK_AGENT_VAULT_TOKEN (README: Connect your agent)", agent)
		}
		s, err := agentSigner(agent)
		return s, func() {}, err
	}
	sess, err := vault.Login(ctx, vault.Config{Address: os.Getenv("VAULT_ADDR")}, vault.LoginConfig{
		Method: vault.AuthMethod(method), Mount: os.Getenv("AIRLOCK_AGENT_AUTH_MOUNT"), Role: os.Getenv("AIRLOCK_AGENT_AUTH_ROLE"),
		JWTFile: os.Getenv("AIRLOCK_AGENT_JWT_FILE"), RoleID: os.Getenv("AIRLOCK_AGENT_ROLE_ID"), SecretIDFile: os.Getenv("AIRLOCK_AGENT_SECRET_ID_FILE"),
		OnError: func(err error) { logger.Warn("agent Vault login", "agent", agent, "err", err) },
	})
	if err != nil {
		return nil, nil, fmt.Errorf("mcp: log in to Vault as agent %s: %w", agent, err)
	}
	return sess.Signer(), sess.Close, nil
}
