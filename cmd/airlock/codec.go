package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/vault"
)

type codecServerOptions struct {
	listen, mount, key, logFormat string
	// uiOrigins is a comma-separated list: a UI reached under more than
	// one name (localhost, 127.0.0.1) has more than one origin.
	uiOrigins string
	insecure  bool
}

func newCodecServerCmd() *cobra.Command {
	var o codecServerOptions
	cmd := &cobra.Command{
		Use:   "codec-server",
		Short: "Decrypt payloads for the Temporal Web UI (remote codec endpoint)",
		Long: `Serve Temporal's remote codec endpoint (POST /encode, POST /decode) so the
Temporal Web UI can show the cleartext of Airlock's encrypted payloads to the
people allowed to see it. Point the UI at it (TEMPORAL_CODEC_ENDPOINT, or the
UI's "Codec Server" setting) with the origins given by --ui-origin.

Environment:
  AIRLOCK_CODEC_TOKEN      bearer token every request must carry
                           ("Authorization: Bearer <token>"); required unless
                           --insecure-no-auth. Env only, never a flag.
  VAULT_ADDR, VAULT_TOKEN  Vault with decrypt rights on the Transit key`,
		Example: `  AIRLOCK_CODEC_TOKEN=... airlock codec-server --listen :8081 --ui-origin https://temporal.example.com
  AIRLOCK_CODEC_TOKEN=... airlock codec-server --ui-origin https://temporal.example.com,https://temporal.internal:8233
  airlock codec-server --insecure-no-auth --listen 127.0.0.1:8081   # local dev only`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCodecServer(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.listen, "listen", envOr("AIRLOCK_CODEC_LISTEN", ":8081"), "address the codec endpoint listens on (env AIRLOCK_CODEC_LISTEN)")
	fs.StringVar(&o.uiOrigins, "ui-origin", envOr("AIRLOCK_CODEC_ORIGINS", envOr("AIRLOCK_CODEC_UI_ORIGIN", "http://localhost:8233,http://127.0.0.1:8233")),
		"the Temporal Web UI's origins, comma-separated: the only browser origins allowed (env AIRLOCK_CODEC_ORIGINS, else AIRLOCK_CODEC_UI_ORIGIN)")
	fs.StringVar(&o.mount, "transit-mount", envOr("AIRLOCK_TRANSIT_MOUNT", vault.DefaultTransitMount), "Vault Transit mount (env AIRLOCK_TRANSIT_MOUNT)")
	fs.StringVar(&o.key, "transit-key", envOr("AIRLOCK_TRANSIT_KEY", vault.DefaultTransitKey), "Vault Transit key wrapping the data keys (env AIRLOCK_TRANSIT_KEY)")
	fs.BoolVar(&o.insecure, "insecure-no-auth", false, "serve without AIRLOCK_CODEC_TOKEN: anyone who reaches the server can decrypt payloads (dev only)")
	addLogFormat(cmd, &o.logFormat)
	return cmd
}

// runCodecServer serves the payload codec over HTTP for the Temporal Web UI:
// CORS for exactly the UI's origins, a bearer token on every request.
func runCodecServer(ctx context.Context, o codecServerOptions, stderr io.Writer) error {
	logger := newLogger(stderr, o.logFormat)

	token := os.Getenv("AIRLOCK_CODEC_TOKEN")
	switch {
	case token == "" && !o.insecure:
		return errors.New("codec-server: AIRLOCK_CODEC_TOKEN is required (env only, never a flag); --insecure-no-auth serves without it")
	case token != "" && o.insecure:
		logger.Warn("AIRLOCK_CODEC_TOKEN is set: --insecure-no-auth ignored, requests need the token")
	case token == "":
		logger.Warn("codec server runs WITHOUT authentication: anyone who reaches it can decrypt payloads", "listen", o.listen)
	}

	transit, err := vault.NewTransit(vault.Config{Address: os.Getenv("VAULT_ADDR"), Token: os.Getenv("VAULT_TOKEN")}, o.mount, o.key)
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	c, err := codec.New(transit, codec.Options{})
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	h, err := codec.NewHandler(c, codec.HandlerOptions{UIOrigins: strings.FieldsFunc(o.uiOrigins, func(r rune) bool { return r == ',' || r == ' ' }), Token: token, InsecureNoAuth: o.insecure})
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", h)

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("codec server listening", "addr", ln.Addr().String(), "ui_origin", o.uiOrigins,
		"transit_key", transit.KeyID(), "auth", token != "")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
