package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/vault"
)

const codecServerUsage = `Usage: airlock codec-server [flags]

Serves Temporal's remote codec endpoint (POST /encode, POST /decode) so the
Temporal Web UI can show the cleartext of Airlock's encrypted payloads to the
people allowed to see it. Point the UI at it (TEMPORAL_CODEC_ENDPOINT, or the
UI's "Codec Server" setting) with the origins given by --ui-origin.

Environment:
  AIRLOCK_CODEC_TOKEN    bearer token every request must carry
                         ("Authorization: Bearer <token>"); required unless
                         --insecure-no-auth. Env only, never a flag.
  VAULT_ADDR, VAULT_TOKEN  Vault with decrypt rights on the Transit key
  AIRLOCK_TRANSIT_MOUNT  Transit mount (default "transit")
  AIRLOCK_TRANSIT_KEY    Transit key (default "airlock-payloads")

Flags:
`

// runCodecServer serves the payload codec over HTTP for the Temporal Web UI:
// CORS for exactly the UI's origin, a bearer token on every request.
func runCodecServer(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("codec-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, codecServerUsage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", envOr("AIRLOCK_CODEC_LISTEN", ":8081"), "address to serve on (env AIRLOCK_CODEC_LISTEN)")
	uiOrigin := fs.String("ui-origin", envOr("AIRLOCK_CODEC_ORIGINS", envOr("AIRLOCK_CODEC_UI_ORIGIN", "http://localhost:8233,http://127.0.0.1:8233")),
		"the Temporal Web UI's origins, comma-separated: the only browser origins allowed (env AIRLOCK_CODEC_ORIGINS)")
	mount := fs.String("transit-mount", envOr("AIRLOCK_TRANSIT_MOUNT", vault.DefaultTransitMount), "Vault Transit mount (env AIRLOCK_TRANSIT_MOUNT)")
	key := fs.String("transit-key", envOr("AIRLOCK_TRANSIT_KEY", vault.DefaultTransitKey), "Vault Transit key wrapping the data keys (env AIRLOCK_TRANSIT_KEY)")
	insecure := fs.Bool("insecure-no-auth", false, "serve without AIRLOCK_CODEC_TOKEN: anyone who reaches the server can decrypt payloads (dev only)")
	logFormat := fs.String("log-format", envOr("AIRLOCK_LOG_FORMAT", "json"), "json or text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("codec-server: unexpected arguments %q", fs.Args())
	}
	logger := newLogger(stderr, *logFormat)

	token := os.Getenv("AIRLOCK_CODEC_TOKEN")
	switch {
	case token == "" && !*insecure:
		return errors.New("codec-server: AIRLOCK_CODEC_TOKEN is required (env only, never a flag); --insecure-no-auth serves without it")
	case token != "" && *insecure:
		logger.Warn("AIRLOCK_CODEC_TOKEN is set: --insecure-no-auth ignored, requests need the token")
	case token == "":
		logger.Warn("codec server runs WITHOUT authentication: anyone who reaches it can decrypt payloads", "listen", *listen)
	}

	transit, err := vault.NewTransit(vault.Config{Address: os.Getenv("VAULT_ADDR"), Token: os.Getenv("VAULT_TOKEN")}, *mount, *key)
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	c, err := codec.New(transit, codec.Options{})
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	h, err := codec.NewHandler(c, codec.HandlerOptions{UIOrigins: strings.FieldsFunc(*uiOrigin, func(r rune) bool { return r == ',' || r == ' ' }), Token: token, InsecureNoAuth: *insecure})
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", h)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("codec-server: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("codec server listening", "addr", ln.Addr().String(), "ui_origin", *uiOrigin,
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
