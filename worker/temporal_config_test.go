package worker

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
)

// temporalEnv are the variables cleared before each case, so the machine's
// own Temporal settings never leak into a test.
var temporalEnv = []string{
	EnvTemporalConfigFile, EnvTemporalProfile, EnvTemporalAddress, EnvTemporalNamespace,
	EnvTemporalAPIKey, EnvTemporalTLS, EnvTemporalTLSCert, EnvTemporalTLSKey, EnvTemporalTLSCA,
	EnvTemporalTLSCertData, EnvTemporalTLSKeyData, EnvTemporalTLSCAData,
	EnvTemporalTLSServerName, EnvTemporalTLSNoVerify,
}

// isolateTemporalEnv unsets every Temporal variable for the test and points
// TEMPORAL_CONFIG_FILE at a file that does not exist, so the user's
// temporal.toml is not read either.
func isolateTemporalEnv(t *testing.T) {
	t.Helper()
	for _, k := range temporalEnv {
		t.Setenv(k, "") // restores the old value after the test
		require.NoError(t, os.Unsetenv(k))
	}
	t.Setenv(EnvTemporalConfigFile, filepath.Join(t.TempDir(), "absent.toml"))
}

// apiKeyOf returns the key an API-key credential sends. The SDK's static
// credential is a func(ctx) (string, error); calling it is the only way to
// see the key without a server.
func apiKeyOf(t *testing.T, c client.Credentials) string {
	t.Helper()
	v := reflect.ValueOf(c)
	require.Equal(t, reflect.Func, v.Kind(), "credentials %T", c)
	out := v.Call([]reflect.Value{reflect.ValueOf(context.Background())})
	require.True(t, out[1].IsNil(), "credential error")
	return out[0].String()
}

// Every Airlock process takes its Temporal connection from the SDK's
// environment configuration; flags win over it.
func TestTemporalOptionsFromEnvironment(t *testing.T) {
	pki := writeTestPKI(t, t.TempDir())
	toml := filepath.Join(t.TempDir(), "temporal.toml")
	require.NoError(t, os.WriteFile(toml, []byte(`
[profile.default]
address = "default-profile:7233"

[profile.cloud]
address = "airlock.a1b2c.tmprl.cloud:7233"
namespace = "airlock.a1b2c"
api_key = "profile-key"

[profile.mtls]
address = "temporal.internal:7233"
namespace = "prod"
[profile.mtls.tls]
client_cert_path = "`+pki.clientCert+`"
client_key_path = "`+pki.clientKey+`"
server_ca_cert_path = "`+pki.caCert+`"
server_name = "temporal.internal"
`), 0o600))

	type want struct {
		address, namespace, apiKey string
		tls, clientCert, customCA  bool
		serverName                 string
	}
	tests := map[string]struct {
		env  map[string]string
		cfg  ClientConfig
		want want
	}{
		"nothing set: local dev server": {
			want: want{address: DefaultTemporalAddress, namespace: DefaultTemporalNamespace},
		},
		"address and namespace from the environment": {
			env:  map[string]string{EnvTemporalAddress: "temporal:7233", EnvTemporalNamespace: "airlock"},
			want: want{address: "temporal:7233", namespace: "airlock"},
		},
		"flags win over the environment": {
			env:  map[string]string{EnvTemporalAddress: "temporal:7233", EnvTemporalNamespace: "airlock"},
			cfg:  ClientConfig{Address: "flag:7233", Namespace: "flagged"},
			want: want{address: "flag:7233", namespace: "flagged"},
		},
		"API key (Temporal Cloud) turns TLS on": {
			env: map[string]string{
				EnvTemporalAddress: "us-east-1.aws.api.temporal.io:7233", EnvTemporalNamespace: "airlock.a1b2c",
				EnvTemporalAPIKey: "env-key",
			},
			want: want{address: "us-east-1.aws.api.temporal.io:7233", namespace: "airlock.a1b2c", apiKey: "env-key", tls: true},
		},
		"mTLS from file paths": {
			env: map[string]string{
				EnvTemporalAddress: "temporal.internal:7233",
				EnvTemporalTLSCert: pki.clientCert, EnvTemporalTLSKey: pki.clientKey,
				EnvTemporalTLSCA: pki.caCert, EnvTemporalTLSServerName: "temporal.internal",
			},
			want: want{address: "temporal.internal:7233", namespace: DefaultTemporalNamespace, tls: true, clientCert: true, customCA: true, serverName: "temporal.internal"},
		},
		"default profile of temporal.toml": {
			env:  map[string]string{EnvTemporalConfigFile: toml},
			want: want{address: "default-profile:7233", namespace: DefaultTemporalNamespace},
		},
		"cloud profile: API key from the file": {
			env:  map[string]string{EnvTemporalConfigFile: toml, EnvTemporalProfile: "cloud"},
			want: want{address: "airlock.a1b2c.tmprl.cloud:7233", namespace: "airlock.a1b2c", apiKey: "profile-key", tls: true},
		},
		"mtls profile": {
			env:  map[string]string{EnvTemporalConfigFile: toml, EnvTemporalProfile: "mtls"},
			want: want{address: "temporal.internal:7233", namespace: "prod", tls: true, clientCert: true, customCA: true, serverName: "temporal.internal"},
		},
		"environment wins over the profile": {
			env:  map[string]string{EnvTemporalConfigFile: toml, EnvTemporalProfile: "cloud", EnvTemporalNamespace: "other", EnvTemporalAPIKey: "env-key"},
			want: want{address: "airlock.a1b2c.tmprl.cloud:7233", namespace: "other", apiKey: "env-key", tls: true},
		},
		"TEMPORAL_TLS=false keeps an API key in plaintext (local proxies)": {
			env:  map[string]string{EnvTemporalAPIKey: "env-key", EnvTemporalTLS: "false"},
			want: want{address: DefaultTemporalAddress, namespace: DefaultTemporalNamespace, apiKey: "env-key"},
		},
		"empty variables count as unset": {
			env: map[string]string{
				EnvTemporalConfigFile: toml, EnvTemporalAddress: "", EnvTemporalAPIKey: "",
				EnvTemporalTLSCA: "", EnvTemporalTLSCert: "", EnvTemporalTLSKey: "",
			},
			want: want{address: "default-profile:7233", namespace: DefaultTemporalNamespace},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			isolateTemporalEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			opts, err := temporalOptions(tc.cfg)
			require.NoError(t, err)
			got := want{address: opts.HostPort, namespace: opts.Namespace}
			if opts.Credentials != nil {
				got.apiKey = apiKeyOf(t, opts.Credentials)
			}
			if tlsCfg := opts.ConnectionOptions.TLS; tlsCfg != nil && !opts.ConnectionOptions.TLSDisabled {
				got.tls = true
				got.clientCert = len(tlsCfg.Certificates) == 1
				got.customCA = tlsCfg.RootCAs != nil
				got.serverName = tlsCfg.ServerName
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestTemporalOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(bad, []byte("[profile.default]\napi_key = \"sk-very-secret\" trailing\n"), 0o600))
	good := filepath.Join(dir, "good.toml")
	require.NoError(t, os.WriteFile(good, []byte("[profile.default]\naddress = \"x:7233\"\n"), 0o600))
	tests := map[string]struct {
		env     map[string]string
		wantErr string
	}{
		"profile named but absent": {
			env:     map[string]string{EnvTemporalConfigFile: good, EnvTemporalProfile: "prod"},
			wantErr: "unable to find profile prod",
		},
		"client certificate without its key": {
			env:     map[string]string{EnvTemporalTLSCert: filepath.Join(dir, "client.pem")},
			wantErr: "client cert or key path",
		},
		"CA file missing": {
			env:     map[string]string{EnvTemporalTLSCA: filepath.Join(dir, "absent-ca.pem")},
			wantErr: "server CA cert",
		},
		"unparsable temporal.toml does not quote the file": {
			env:     map[string]string{EnvTemporalConfigFile: bad},
			wantErr: "temporal.toml line 2",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			isolateTemporalEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := temporalOptions(ClientConfig{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.NotContains(t, err.Error(), "sk-very-secret")
		})
	}
}

// What Dial logs says how it connects (TLS, client certificate, API key
// present) and never the key.
func TestDialLogsNoSecrets(t *testing.T) {
	isolateTemporalEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens: the dial fails fast
	const key = "sk-live-0123456789abcdef"
	t.Setenv(EnvTemporalAddress, addr)
	t.Setenv(EnvTemporalAPIKey, key)

	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err = Dial(ctx, ClientConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.Error(t, err)
	assert.Contains(t, logs.String(), "temporal.address="+addr)
	assert.Contains(t, logs.String(), "temporal.tls=true")
	assert.Contains(t, logs.String(), "temporal.api_key=true")
	assert.NotContains(t, logs.String(), key)
	assert.NotContains(t, err.Error(), key)
	assert.True(t, strings.HasPrefix(err.Error(), "dial temporal "+addr), err.Error())
}
