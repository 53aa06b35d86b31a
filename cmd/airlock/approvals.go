package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/worker"
)

// runApprovals serves Slack's interaction endpoint: a verified click becomes
// the cycle's decision Update.
func runApprovals(ctx context.Context, args []string, stderr io.Writer) error {
	var cf clientFlags
	fs := flag.NewFlagSet("approvals", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf.register(fs)
	listen := fs.String("listen", envOr("AIRLOCK_APPROVALS_LISTEN", ":8080"), "address to serve on (env AIRLOCK_APPROVALS_LISTEN)")
	logFormat := fs.String("log-format", envOr("AIRLOCK_LOG_FORMAT", "json"), "json or text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "airlock-approvals", LogFormat: *logFormat, LogWriter: stderr})
	if err != nil {
		return err
	}
	defer shutdown(tel)
	logger := tel.Logger
	secret := os.Getenv("SLACK_SIGNING_SECRET")
	if secret == "" {
		return errors.New("approvals: SLACK_SIGNING_SECRET is required (env only, never a flag)")
	}
	st, done, err := cf.starter(ctx)
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
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("approval endpoint listening", "addr", *listen, "path", "/slack/interactions", "slack_edits", notifier != nil)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
