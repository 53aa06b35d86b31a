// Package devenv runs what `airlock dev` serves next to the stack so the
// local picture is complete without a manual step: the codec server the
// Temporal Web UI decodes payloads with (configured in the UI at start-up)
// and Slack's interaction endpoint with a generated dev signing secret,
// plus a ready-to-run signed click for a waiting action.
package devenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.temporal.io/sdk/converter"

	"github.com/airlockhq/airlock/approval"
	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/contract"
)

// CodecListener reserves the codec server's port before the Temporal dev
// server starts, so the UI can be started with its URL
// (devstack.Options.TemporalUICodecEndpoint). Serve it with Start.
func CodecListener() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("codec listener: %w", err)
	}
	return ln, "http://" + ln.Addr().String(), nil
}

// Config says what Start serves.
type Config struct {
	// CodecListener is the codec server's socket from CodecListener. Required.
	CodecListener net.Listener
	// Codec decodes and encodes payloads (Vault Transit). Required.
	Codec converter.PayloadCodec
	// UIURL is the Temporal Web UI as printed, http://127.0.0.1:<port>:
	// the codec server allows it and its localhost twin. Required.
	UIURL string
	// Approvals handle clicks; SigningSecret is set by Start. Required:
	// Decider.
	Approvals approval.HandlerConfig
	// Logger receives the servers' logs. Default: slog.Default().
	Logger *slog.Logger
}

// Servers are the running codec server and approval endpoint.
type Servers struct {
	// CodecURL is the codec server, as the UI calls it.
	CodecURL string
	// ApprovalsURL is Slack's Request URL: POST signed interactions here.
	ApprovalsURL string
	// SigningSecret is the generated dev Slack signing secret.
	SigningSecret string

	srvs    []*http.Server
	handler *approval.Handler
	errc    chan error
}

// UIOrigins are the origins a browser uses for the UI at uiURL: the printed
// address and the same port under localhost, which a browser treats as a
// different origin.
func UIOrigins(uiURL string) ([]string, error) {
	u, err := url.Parse(uiURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("ui origins: bad UI URL %q", uiURL)
	}
	if h := u.Hostname(); u.Port() != "" && (h == "127.0.0.1" || h == "localhost") {
		return []string{u.Scheme + "://127.0.0.1:" + u.Port(), u.Scheme + "://localhost:" + u.Port()}, nil
	}
	return []string{u.Scheme + "://" + u.Host}, nil
}

// Start serves the codec server on cfg.CodecListener (unauthenticated,
// loopback only: it is a dev machine's) and the approval endpoint on a free
// loopback port with a new signing secret. Close stops both.
func Start(cfg Config) (*Servers, error) {
	if cfg.CodecListener == nil || cfg.Codec == nil || cfg.Approvals.Decider == nil {
		return nil, errors.New("devenv: codec listener, codec and decider are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	origins, err := UIOrigins(cfg.UIURL)
	if err != nil {
		return nil, err
	}
	ch, err := codec.NewHandler(cfg.Codec, codec.HandlerOptions{UIOrigins: origins, InsecureNoAuth: true})
	if err != nil {
		return nil, err
	}
	secret, err := newSecret()
	if err != nil {
		return nil, err
	}
	ac := cfg.Approvals
	ac.SigningSecret = secret
	if ac.Logger == nil {
		ac.Logger = cfg.Logger
	}
	ah, err := approval.NewHandler(ac)
	if err != nil {
		return nil, err
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ah.Close()
		return nil, fmt.Errorf("approvals listener: %w", err)
	}
	codecMux := http.NewServeMux()
	codecMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	codecMux.Handle("/", ch)
	approvalsMux := http.NewServeMux()
	approvalsMux.Handle("POST /slack/interactions", ah)
	approvalsMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })

	s := &Servers{
		CodecURL:      "http://" + cfg.CodecListener.Addr().String(),
		ApprovalsURL:  "http://" + aln.Addr().String() + "/slack/interactions",
		SigningSecret: secret,
		handler:       ah,
		errc:          make(chan error, 2),
	}
	for _, x := range []struct {
		ln net.Listener
		h  http.Handler
	}{{cfg.CodecListener, codecMux}, {aln, approvalsMux}} {
		srv := &http.Server{Handler: x.h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
		s.srvs = append(s.srvs, srv)
		go func() {
			if err := srv.Serve(x.ln); !errors.Is(err, http.ErrServerClosed) {
				s.errc <- err
			}
		}()
	}
	cfg.Logger.Info("dev servers listening", "codec", s.CodecURL, "codec_origins", origins, "approvals", s.ApprovalsURL)
	return s, nil
}

// Err reports a server that stopped serving on its own.
func (s *Servers) Err() <-chan error { return s.errc }

// Close shuts both servers down, letting requests in flight finish for up
// to five seconds.
func (s *Servers) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range s.srvs {
		errs = append(errs, srv.Shutdown(ctx))
	}
	errs = append(errs, s.handler.Close())
	return errors.Join(errs...)
}

func newSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("signing secret: %w", err)
	}
	return "dev-" + hex.EncodeToString(b), nil
}

// PrintServers tells the developer where the codec server and the approval
// endpoint are, and the dev signing secret.
func (s *Servers) PrintServers(w io.Writer, uiURL string) {
	origins, _ := UIOrigins(uiURL)
	fmt.Fprintf(w, `  Codec server     %s   (the UI decodes payloads through it: set at start-up, allows %s; no auth, loopback only)
  Slack endpoint   %s
  export SLACK_SIGNING_SECRET=%s   # generated dev signing secret
`, s.CodecURL, strings.Join(origins, " and "), s.ApprovalsURL, s.SigningSecret)
}

// PrintClick prints a ready-to-run, correctly signed Slack click on
// kind's button of a pending action, by approver.
func (s *Servers) PrintClick(w io.Writer, p contract.PendingAction, kind contract.DecisionKind, approver string) error {
	body, err := ClickBody(p, kind, approver)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  click %s as %s, as Slack would (signed with $SLACK_SIGNING_SECRET, exported above):\n", approval.ActionID(kind), approver)
	for _, line := range strings.Split(ClickCommand(s.ApprovalsURL, body), "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
	return nil
}
