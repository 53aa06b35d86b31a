package codec

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

const (
	uiOrigin   = "http://localhost:8233"
	codecToken = "codec-token-for-tests"
)

// codecRequest is a request as the Temporal Web UI sends it.
func codecRequest(t *testing.T, url, path string, ps []*commonpb.Payload, header map[string]string) *http.Response {
	t.Helper()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: ps})
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+path, strings.NewReader(string(body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readPayloads(t *testing.T, resp *http.Response) []*commonpb.Payload {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	var out commonpb.Payloads
	require.NoError(t, protojson.Unmarshal(b, &out), string(b))
	return out.Payloads
}

func TestHandler(t *testing.T) {
	c := newCodec(t, newTransit(t), Options{})
	h, err := NewHandler(c, HandlerOptions{UIOrigin: uiOrigin, Token: codecToken})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	orig := payloads(t, request{Agent: "sample", APIKey: secret})
	enc := encode(t, c, orig)

	t.Run("decode with the token", func(t *testing.T) {
		resp := codecRequest(t, srv.URL, "/decode", enc, map[string]string{"Authorization": "Bearer " + codecToken})
		got := readPayloads(t, resp)
		assertSame(t, orig, got)
		assert.Contains(t, string(got[0].GetData()), secret)
	})

	t.Run("decode from the UI origin", func(t *testing.T) {
		resp := codecRequest(t, srv.URL, "/decode", enc, map[string]string{
			"Authorization": "Bearer " + codecToken, "Origin": uiOrigin,
		})
		assertSame(t, orig, readPayloads(t, resp))
		assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
		assert.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
	})

	t.Run("encode then decode", func(t *testing.T) {
		auth := map[string]string{"Authorization": "Bearer " + codecToken}
		sealed := readPayloads(t, codecRequest(t, srv.URL, "/encode", orig, auth))
		require.True(t, IsEncrypted(sealed[0]))
		assertSame(t, orig, readPayloads(t, codecRequest(t, srv.URL, "/decode", sealed, auth)))
	})

	for name, header := range map[string]map[string]string{
		"no token":             {},
		"wrong token":          {"Authorization": "Bearer not-the-token"},
		"token prefix":         {"Authorization": "Bearer " + codecToken[:5]},
		"token without Bearer": {"Authorization": codecToken},
		"basic auth":           {"Authorization": "Basic " + codecToken},
		"UI origin, no token":  {"Origin": uiOrigin},
	} {
		t.Run("unauthorized: "+name, func(t *testing.T) {
			resp := codecRequest(t, srv.URL, "/decode", enc, header)
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.NotContains(t, string(b), secret)
			assert.Equal(t, `Bearer realm="airlock-codec"`, resp.Header.Get("WWW-Authenticate"))
		})
	}

	t.Run("another origin is refused, even with the token", func(t *testing.T) {
		resp := codecRequest(t, srv.URL, "/decode", enc, map[string]string{
			"Authorization": "Bearer " + codecToken, "Origin": "https://evil.example",
		})
		b, _ := io.ReadAll(resp.Body)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.NotContains(t, string(b), secret)
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	})

	preflight := func(t *testing.T, origin string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, srv.URL+"/decode", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-namespace")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("preflight from the UI origin", func(t *testing.T) {
		resp := preflight(t, uiOrigin)
		assert.Equal(t, http.StatusNoContent, resp.StatusCode)
		assert.Equal(t, uiOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
		assert.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
		assert.Equal(t, "Content-Type,X-Namespace,Authorization", resp.Header.Get("Access-Control-Allow-Headers"))
		assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
		assert.Contains(t, resp.Header.Values("Vary"), "Origin")
	})

	t.Run("preflight from another origin", func(t *testing.T) {
		resp := preflight(t, "http://localhost:9999")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Headers"))
	})

	t.Run("oversized body", func(t *testing.T) {
		small, err := NewHandler(c, HandlerOptions{UIOrigin: uiOrigin, Token: codecToken, MaxBodyBytes: 64})
		require.NoError(t, err)
		s := httptest.NewServer(small)
		defer s.Close()
		resp := codecRequest(t, s.URL, "/decode", enc, map[string]string{"Authorization": "Bearer " + codecToken})
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})
}

func TestNewHandlerOptions(t *testing.T) {
	c := newCodec(t, newTransit(t), Options{})
	tests := map[string]struct {
		opts    HandlerOptions
		wantErr string
	}{
		"token":                 {opts: HandlerOptions{UIOrigin: uiOrigin, Token: "t"}},
		"explicitly no auth":    {opts: HandlerOptions{UIOrigin: uiOrigin, InsecureNoAuth: true}},
		"no token":              {opts: HandlerOptions{UIOrigin: uiOrigin}, wantErr: "no token"},
		"no origin":             {opts: HandlerOptions{Token: "t"}, wantErr: "no UI origin"},
		"origin with path":      {opts: HandlerOptions{UIOrigin: uiOrigin + "/namespaces", Token: "t"}, wantErr: "UI origin must look like"},
		"origin without scheme": {opts: HandlerOptions{UIOrigin: "localhost:8233", Token: "t"}, wantErr: "UI origin must look like"},
		"wildcard origin":       {opts: HandlerOptions{UIOrigin: "*", Token: "t"}, wantErr: "UI origin must look like"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewHandler(c, tc.opts)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}

	t.Run("no auth serves without a token", func(t *testing.T) {
		h, err := NewHandler(c, HandlerOptions{UIOrigin: uiOrigin, InsecureNoAuth: true})
		require.NoError(t, err)
		srv := httptest.NewServer(h)
		defer srv.Close()
		orig := payloads(t, secret)
		got := readPayloads(t, codecRequest(t, srv.URL, "/decode", encode(t, c, orig), nil))
		assertSame(t, orig, got)
	})
}

// The UI answers under every name it is printed with; a browser calls each
// a different origin, and only those are allowed.
func TestHandlerOrigins(t *testing.T) {
	c := newCodec(t, newTransit(t), Options{})
	origins := []string{"http://127.0.0.1:8233", "http://localhost:8233"}
	h, err := NewHandler(c, HandlerOptions{UIOrigins: origins, Token: codecToken})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	orig := payloads(t, request{Agent: "sample", APIKey: secret})
	enc := encode(t, c, orig)

	tests := map[string]struct {
		origin string
		want   int
	}{
		"the UI by address":   {origin: "http://127.0.0.1:8233", want: http.StatusOK},
		"the UI by name":      {origin: "http://localhost:8233", want: http.StatusOK},
		"another port":        {origin: "http://127.0.0.1:8234", want: http.StatusForbidden},
		"https, not http":     {origin: "https://localhost:8233", want: http.StatusForbidden},
		"another host":        {origin: "http://127.0.0.2:8233", want: http.StatusForbidden},
		"a lookalike suffix":  {origin: "http://localhost:8233.evil.example", want: http.StatusForbidden},
		"the literal null":    {origin: "null", want: http.StatusForbidden},
		"no origin (the CLI)": {origin: "", want: http.StatusOK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			header := map[string]string{"Authorization": "Bearer " + codecToken}
			if tc.origin != "" {
				header["Origin"] = tc.origin
			}
			resp := codecRequest(t, srv.URL, "/decode", enc, header)
			if tc.want != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				assert.Equal(t, tc.want, resp.StatusCode, string(b))
				assert.NotContains(t, string(b), secret)
				assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
				return
			}
			assertSame(t, orig, readPayloads(t, resp)) // decoded
			assert.Equal(t, tc.origin, resp.Header.Get("Access-Control-Allow-Origin"), "CORS names the caller's own origin")
		})
	}

	t.Run("UIOrigin and UIOrigins together", func(t *testing.T) {
		h, err := NewHandler(c, HandlerOptions{UIOrigin: "http://localhost:8233", UIOrigins: []string{"http://127.0.0.1:8233"}, Token: codecToken})
		require.NoError(t, err)
		s := httptest.NewServer(h)
		defer s.Close()
		for _, o := range origins {
			resp := codecRequest(t, s.URL, "/decode", enc, map[string]string{"Authorization": "Bearer " + codecToken, "Origin": o})
			assert.Equal(t, http.StatusOK, resp.StatusCode, o)
		}
	})

	t.Run("a bad origin in the list is an error", func(t *testing.T) {
		_, err := NewHandler(c, HandlerOptions{UIOrigins: []string{"http://localhost:8233", "localhost:8233"}, Token: codecToken})
		assert.ErrorContains(t, err, `UI origin must look like http(s)://host[:port], not "localhost:8233"`)
	})
}
