package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/worker"
)

type approvalsOptions struct {
	clientFlags
	listen, logFormat string
}

func newApprovalsCmd() *cobra.Command {
	var o approvalsOptions
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "Serve Slack's interaction endpoint: verified button clicks become decisions",
		Long: `Serve POST /slack/interactions for the Slack app's Interactivity Request URL.
Each request's signature is verified with SLACK_SIGNING_SECRET before it is
read; a verified Approve, Deny, Stop, Kill or Promote click becomes the same
validated Temporal Update the CLI sends. With SLACK_BOT_TOKEN the approval
messages are edited to show the outcome. Also serves GET /healthz and
GET /metrics.

Environment (secrets are never flags):
  SLACK_SIGNING_SECRET   verifies Slack's requests (required)
  SLACK_BOT_TOKEN        edits approval messages (optional)`,
		Example: `  SLACK_SIGNING_SECRET=... airlock approvals --listen :8080 --log-format text`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runApprovals(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	o.register(cmd.Flags())
	acceptUnusedCatalog(cmd)
	cmd.Flags().StringVar(&o.listen, "listen", envOr("AIRLOCK_APPROVALS_LISTEN", ":8080"), "address the interaction endpoint listens on (env AIRLOCK_APPROVALS_LISTEN)")
	addLogFormat(cmd, &o.logFormat)
	return cmd
}

// runApprovals serves Slack's interaction endpoint: a verified click becomes
// the cycle's decision Update.
func runApprovals(ctx context.Context, o approvalsOptions, stderr io.Writer) error {
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-approvals", LogFormat: o.logFormat, LogWriter: stderr})
	if err != nil {
		return err
	}
	defer shutdown(tel)
	logger := tel.Logger
	secret := os.Getenv("SLACK_SIGNING_SECRET")
	if secret == "" {
		return errors.New("approvals: SLACK_SIGNING_SECRET is required (env only, never a flag)")
	}
	st, done, err := o.starter(ctx)
	if err != nil {
		return err
	}
	defer done()
	cfg := worker.FromEnv()
	var notifier *approval.Notifier
	if n, err := worker.NewNotifier(cfg, logger); err != nil {
		return err
	} else if sn, ok := n.(*approval.Notifier); ok {
		notifier = sn
	}
	h, err := approval.NewHandler(approval.HandlerConfig{
		SigningSecret: secret, Decider: approval.DeciderFunc(st.Decide), Killer: approval.KillerFunc(st.RequestKill), Promoter: approval.PromoterFunc(st.Promote),
		Notifier: notifier, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle("POST /slack/interactions", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /metrics", tel.PrometheusHandler())
	srv := &http.Server{Addr: o.listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("approval endpoint listening", "addr", o.listen, "path", "/slack/interactions", "slack_edits", notifier != nil)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
