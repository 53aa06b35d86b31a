package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/airlockhq/airlock/mcpserver"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
)

// runMCP serves one agent's MCP tools over stdio (stdout is the protocol:
// logs go to stderr) or streamable HTTP. All logic is in mcpserver.
func runMCP(ctx context.Context, args []string, _, stderr io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf.register(fs)
	agent := fs.String("agent", os.Getenv("AIRLOCK_AGENT"), "the agent this server speaks for (env AIRLOCK_AGENT); it signs as this agent with AIRLOCK_AGENT_VAULT_TOKEN (else VAULT_TOKEN)")
	httpAddr := fs.String("http", "", "serve streamable HTTP on this address (e.g. 127.0.0.1:8090) instead of stdio; off loopback it needs AIRLOCK_MCP_TOKEN (clients send Authorization: Bearer <token>)")
	wait := fs.Duration("wait", mcpserver.DefaultWait, "how long a call waits for its cycle (a human decision included) before it answers \"pending\"")
	progress := fs.Duration("progress", mcpserver.DefaultProgressInterval, "how often a waiting call sends MCP progress notifications (to clients that asked for them)")
	ui := fs.String("ui", os.Getenv("AIRLOCK_UI_URL"), "Temporal UI base URL for links in results, e.g. http://127.0.0.1:8233 (env AIRLOCK_UI_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cf.catalog == "" {
		return errors.New("mcp: the catalog is required: --catalog or AIRLOCK_CATALOG")
	}
	cat, err := policy.LoadFile(cf.catalog)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	signer, logout, err := mcpSigner(ctx, *agent, logger)
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
	cf.tel = tel
	st, done, err := cf.starter(ctx, starter.WithSigner(signer), starter.WithTracerProvider(tel.TracerProvider))
	if err != nil {
		return err
	}
	defer done()
	srv, err := mcpserver.New(mcpserver.Config{AgentID: *agent, Catalog: cat, Cycles: st, Wait: *wait, ProgressInterval: *progress, UIBaseURL: *ui,
		Namespace: envOr("TEMPORAL_NAMESPACE", cf.namespace), Logger: logger,
		Traceparent: os.Getenv(telemetry.EnvTraceParent), Tracestate: os.Getenv("TRACESTATE")})
	if err != nil {
		return err
	}
	if *httpAddr == "" {
		return srv.RunStdio(ctx)
	}
	token := os.Getenv("AIRLOCK_MCP_TOKEN")
	if host, _, err := net.SplitHostPort(*httpAddr); err != nil {
		return fmt.Errorf("mcp: --http %q: %w", *httpAddr, err)
	} else if ip := net.ParseIP(host); token == "" && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Errorf("mcp: --http %s is reachable from other hosts and anyone reaching it acts as agent %s: set AIRLOCK_MCP_TOKEN or listen on 127.0.0.1", *httpAddr, *agent)
	}
	hs := &http.Server{Addr: *httpAddr, Handler: srv.HTTPHandler(token), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shut)
	}()
	logger.Info("serving MCP over streamable HTTP", "addr", *httpAddr, "agent", *agent)
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
