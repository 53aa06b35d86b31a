package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/BurntSushi/toml"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
)

// Defaults used when neither ClientConfig, the TEMPORAL_* variables nor a
// temporal.toml profile name a frontend or namespace.
const (
	DefaultTemporalAddress   = "127.0.0.1:7233"
	DefaultTemporalNamespace = "default"
)

// The variables Temporal's environment configuration reads (the SDK reads
// them, not Airlock's code; named here so deploy checks know them).
const (
	EnvTemporalConfigFile    = "TEMPORAL_CONFIG_FILE" // Default: <user config dir>/temporalio/temporal.toml
	EnvTemporalProfile       = "TEMPORAL_PROFILE"     // Default: default
	EnvTemporalAddress       = "TEMPORAL_ADDRESS"
	EnvTemporalNamespace     = "TEMPORAL_NAMESPACE"
	EnvTemporalAPIKey        = "TEMPORAL_API_KEY" // turns TLS on unless TEMPORAL_TLS=false
	EnvTemporalTLS           = "TEMPORAL_TLS"
	EnvTemporalTLSCert       = "TEMPORAL_TLS_CLIENT_CERT_PATH"
	EnvTemporalTLSKey        = "TEMPORAL_TLS_CLIENT_KEY_PATH"
	EnvTemporalTLSCA         = "TEMPORAL_TLS_SERVER_CA_CERT_PATH"
	EnvTemporalTLSCertData   = "TEMPORAL_TLS_CLIENT_CERT_DATA"
	EnvTemporalTLSKeyData    = "TEMPORAL_TLS_CLIENT_KEY_DATA"
	EnvTemporalTLSCAData     = "TEMPORAL_TLS_SERVER_CA_CERT_DATA"
	EnvTemporalTLSServerName = "TEMPORAL_TLS_SERVER_NAME"
	EnvTemporalTLSNoVerify   = "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION"
)

// temporalOptions is where every Airlock process's connection to Temporal
// starts: the SDK's environment configuration (package envconfig), i.e. the
// temporal.toml profile named by TEMPORAL_PROFILE (file: TEMPORAL_CONFIG_FILE,
// else the user config dir), then the TEMPORAL_* variables over it:
// TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS,
// TEMPORAL_TLS_CLIENT_CERT_PATH/_DATA, TEMPORAL_TLS_CLIENT_KEY_PATH/_DATA,
// TEMPORAL_TLS_SERVER_CA_CERT_PATH/_DATA, TEMPORAL_TLS_SERVER_NAME,
// TEMPORAL_TLS_DISABLE_HOST_VERIFICATION, TEMPORAL_GRPC_META_*. So Temporal
// Cloud (API key) and mTLS clusters are configured the way Temporal's own
// tools are. cfg.Address and cfg.Namespace (flags) win over all of it.
//
// The codec, interceptors and logger are Airlock's and are layered on by
// Dial; a remote codec named in the profile (TEMPORAL_CODEC_ENDPOINT) is for
// the UI and is not used here.
func temporalOptions(cfg ClientConfig) (client.Options, error) {
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{EnvLookup: nonEmptyEnv{}})
	if err != nil {
		// A TOML parse error can quote the file, and the file holds API keys:
		// say where it is, not what it says.
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return client.Options{}, fmt.Errorf("temporal environment configuration: temporal.toml line %d (last key %q) does not parse", pe.Position.Line, pe.LastKey)
		}
		return client.Options{}, fmt.Errorf("temporal environment configuration: %w", err)
	}
	if cfg.Address != "" {
		opts.HostPort = cfg.Address
	}
	if opts.HostPort == "" {
		opts.HostPort = DefaultTemporalAddress
	}
	if cfg.Namespace != "" {
		opts.Namespace = cfg.Namespace
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultTemporalNamespace
	}
	return opts, nil
}

// connectionSummary describes a connection for logs: where, and which kinds
// of credentials, never the credentials themselves.
type connectionSummary struct {
	address, namespace                string
	tls, clientCert, customCA, apiKey bool
}

func summarize(opts client.Options) connectionSummary {
	s := connectionSummary{address: opts.HostPort, namespace: opts.Namespace, apiKey: opts.Credentials != nil}
	if t := opts.ConnectionOptions.TLS; t != nil && !opts.ConnectionOptions.TLSDisabled {
		s.tls = true
		s.clientCert = len(t.Certificates) > 0
		s.customCA = t.RootCAs != nil
	}
	return s
}

// LogValue implements slog.LogValuer.
func (s connectionSummary) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("address", s.address),
		slog.String("namespace", s.namespace),
		slog.Bool("tls", s.tls),
		slog.Bool("client_cert", s.clientCert),
		slog.Bool("custom_ca", s.customCA),
		slog.Bool("api_key", s.apiKey),
	)
}

// nonEmptyEnv treats a variable set to "" as unset. envconfig applies any set
// variable, so an empty TEMPORAL_TLS_SERVER_CA_CERT_PATH left by a compose
// file or a Helm value would turn TLS on against a plaintext server, and an
// empty TEMPORAL_ADDRESS would hide the profile's address.
type nonEmptyEnv struct{}

func (nonEmptyEnv) Environ() []string { return os.Environ() }

func (nonEmptyEnv) LookupEnv(key string) (string, bool) {
	v, ok := os.LookupEnv(key)
	return v, ok && v != ""
}

var _ envconfig.EnvLookup = nonEmptyEnv{}
