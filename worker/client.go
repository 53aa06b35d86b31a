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
// server) talks to Temporal: the same codec and the same tracing.
type ClientConfig struct {
	Address   string // Default: 127.0.0.1:7233
	Namespace string // Default: default
	Logger    *slog.Logger
	// Telemetry adds the OpenTelemetry tracing interceptor and the SDK's
	// metrics. Nil: neither.
	Telemetry *telemetry.Telemetry
	// Codec encrypts every payload (see package codec). Nil: plain payloads.
	Codec *codec.Codec
}

// Dial connects a Temporal client configured as cfg says.
func Dial(ctx context.Context, cfg ClientConfig) (client.Client, error) {
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:7233"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := client.Options{
		HostPort:  cfg.Address,
		Namespace: cfg.Namespace,
		Logger:    log.NewStructuredLogger(cfg.Logger),
	}
	if cfg.Telemetry != nil {
		ints, err := cfg.Telemetry.TemporalInterceptors()
		if err != nil {
			return nil, fmt.Errorf("tracing interceptor: %w", err)
		}
		opts.Interceptors = ints
		opts.MetricsHandler = cfg.Telemetry.TemporalMetricsHandler()
	}
	if cfg.Codec != nil {
		opts.DataConverter = codec.DataConverter(cfg.Codec)
		// Error messages and stack traces are encrypted too: they can quote inputs.
		opts.FailureConverter = codec.FailureConverter(cfg.Codec)
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("dial temporal %s: %w", cfg.Address, err)
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
