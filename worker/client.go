package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"

	"github.com/airlockhq/airlock/codec"
	"github.com/airlockhq/airlock/telemetry"
	"github.com/airlockhq/airlock/vault"
)

// ClientConfig is how every Airlock process (worker, starter, CLI, approval
// server) talks to Temporal: the same connection settings, codec and tracing.
// The connection starts from Temporal's environment configuration (see
// temporalOptions: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
// TEMPORAL_TLS_*, TEMPORAL_PROFILE and temporal.toml); the fields below win.
type ClientConfig struct {
	// Address overrides the frontend host:port.
	// Default: TEMPORAL_ADDRESS or the profile's address, else 127.0.0.1:7233.
	Address string
	// Namespace overrides the namespace.
	// Default: TEMPORAL_NAMESPACE or the profile's namespace, else default.
	Namespace string
	Logger    *slog.Logger
	// Telemetry adds the OpenTelemetry tracing interceptor and the SDK's
	// metrics. Nil: neither.
	Telemetry *telemetry.Telemetry
	// Codec encrypts every payload (see package codec). Nil: plain payloads.
	Codec *codec.Codec
}

// Dial connects a Temporal client configured as cfg says.
func Dial(ctx context.Context, cfg ClientConfig) (client.Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts, err := temporalOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts.Logger = log.NewStructuredLogger(cfg.Logger)
	if cfg.Telemetry != nil {
		ints, err := cfg.Telemetry.TemporalInterceptors()
		if err != nil {
			return nil, fmt.Errorf("tracing interceptor: %w", err)
		}
		opts.Interceptors = append(opts.Interceptors, ints...)
		opts.MetricsHandler = cfg.Telemetry.TemporalMetricsHandler()
	}
	if cfg.Codec != nil {
		opts.DataConverter = codec.DataConverter(cfg.Codec)
		// Error messages and stack traces are encrypted too: they can quote inputs.
		opts.FailureConverter = codec.FailureConverter(cfg.Codec)
	}
	conn := summarize(opts)
	cfg.Logger.InfoContext(ctx, "connecting to temporal", "temporal", conn)
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("dial temporal %s (namespace %s, tls %t): %w", conn.address, conn.namespace, conn.tls, err)
	}
	return c, nil
}

// CodecConfig says where the payload keys live.
type CodecConfig struct {
	VaultAddr, VaultToken string
	Mount                 string // AIRLOCK_TRANSIT_MOUNT. Default: transit
	Key                   string // AIRLOCK_TRANSIT_KEY. Default: airlock-payloads
}

// CodecFromEnv reads the codec's Vault settings from the environment.
func CodecFromEnv() CodecConfig {
	return CodecConfig{
		VaultAddr: os.Getenv("VAULT_ADDR"), VaultToken: os.Getenv("VAULT_TOKEN"),
		Mount: os.Getenv("AIRLOCK_TRANSIT_MOUNT"), Key: os.Getenv("AIRLOCK_TRANSIT_KEY"),
	}
}

// NewCodec builds the payload codec over Vault Transit. ensure creates the
// mount and key if missing (dev stacks); production creates them once.
func NewCodec(ctx context.Context, cfg CodecConfig, ensure bool) (*codec.Codec, error) {
	tr, err := vault.NewTransit(vault.Config{Address: cfg.VaultAddr, Token: cfg.VaultToken}, cfg.Mount, cfg.Key)
	if err != nil {
		return nil, err
	}
	if ensure {
		if err := tr.EnsureMount(ctx); err != nil {
			return nil, err
		}
		if err := tr.EnsureKey(ctx); err != nil {
			return nil, err
		}
	}
	return codec.New(tr, codec.Options{})
}
