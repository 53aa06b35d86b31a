package codec

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.temporal.io/sdk/converter"
)

// DefaultMaxBodyBytes bounds a codec server request body.
const DefaultMaxBodyBytes = 8 << 20

// HandlerOptions configure the codec server handler.
type HandlerOptions struct {
	// UIOrigin is the one browser origin allowed to call the server, e.g.
	// the Temporal Web UI at http://localhost:8233 (scheme://host[:port],
	// no path). Requests from any other origin are refused; requests with
	// no Origin (the temporal CLI, scripts) are allowed. Required unless
	// UIOrigins is set.
	UIOrigin string
	// UIOrigins are further allowed origins, for a UI reached under more
	// than one name (http://127.0.0.1:8233 and http://localhost:8233 are
	// different origins to a browser). Default: none.
	UIOrigins []string
	// Token is the bearer token every /encode and /decode request must
	// carry ("Authorization: Bearer <Token>"), compared in constant time.
	// Required unless InsecureNoAuth.
	Token string
	// InsecureNoAuth serves without a token, letting anyone who reaches the
	// server decrypt any payload it is sent. Only for a dev machine. Ignored
	// when Token is set.
	InsecureNoAuth bool
	// MaxBodyBytes bounds a request body. Default: 8 MiB.
	MaxBodyBytes int64
}

// NewHandler serves Temporal's remote codec protocol (POST …/encode and
// …/decode with JSON Payloads) for the Temporal Web UI and CLI, with CORS
// for exactly the UI's origins and bearer-token authentication.
func NewHandler(c converter.PayloadCodec, opts HandlerOptions) (http.Handler, error) {
	if c == nil {
		return nil, errors.New("codec handler: no codec")
	}
	want := opts.UIOrigins
	if opts.UIOrigin != "" || len(want) == 0 {
		want = append([]string{opts.UIOrigin}, want...)
	}
	origins := map[string]bool{}
	for _, o := range want {
		origin, err := canonicalOrigin(o)
		if err != nil {
			return nil, err
		}
		origins[origin] = true
	}
	if opts.Token == "" && !opts.InsecureNoAuth {
		return nil, errors.New("codec handler: no token (set AIRLOCK_CODEC_TOKEN, or explicitly allow unauthenticated access)")
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxBodyBytes < 0 {
		return nil, errors.New("codec handler: MaxBodyBytes must be positive")
	}
	h := &handler{
		next:    converter.NewPayloadCodecHTTPHandler(c),
		origins: origins,
		maxBody: opts.MaxBodyBytes,
	}
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		h.tokenSum = sum[:]
	}
	return h, nil
}

type handler struct {
	next     http.Handler
	origins  map[string]bool // canonical origins allowed
	tokenSum []byte          // sha256 of the token; nil: no authentication
	maxBody  int64
}

const (
	allowHeaders = "Content-Type,X-Namespace,Authorization"
	allowMethods = "POST,OPTIONS"
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin != "" {
		if !h.origins[origin] {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	}
	// A preflight carries no credentials; answer it before authenticating.
	if r.Method == http.MethodOptions {
		if origin == "" {
			http.Error(w, "not a CORS preflight", http.StatusBadRequest)
			return
		}
		w.Header().Set("Access-Control-Allow-Methods", allowMethods)
		w.Header().Set("Access-Control-Allow-Headers", allowHeaders)
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock-codec"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.maxBody)
	h.next.ServeHTTP(w, r)
}

// authorized compares the bearer token in constant time; hashing both sides
// first keeps the token's length from leaking through timing as well.
func (h *handler) authorized(r *http.Request) bool {
	if h.tokenSum == nil {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum) == 1
}

// canonicalOrigin checks that s is a bare origin as browsers send it.
func canonicalOrigin(s string) (string, error) {
	if s == "" {
		return "", errors.New("codec handler: no UI origin")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("codec handler: UI origin must look like http(s)://host[:port], not %q", s)
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), nil
}
