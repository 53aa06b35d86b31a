package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Transit defaults.
const (
	// DefaultTransitMount is the path the Transit secrets engine is mounted at.
	DefaultTransitMount = "transit"
	// DefaultTransitKey is the Transit key that wraps payload data keys.
	DefaultTransitKey = "airlock-payloads"
)

// dataKeyBytes is the size of a data key: AES-256.
const dataKeyBytes = 32

var (
	transitMountRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
	transitKeyRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// Transit is one key of Vault's Transit engine used for envelope encryption:
// it hands out fresh AES-256 data keys together with their wrapped form (the
// data key encrypted by the Transit key, which never leaves Vault) and
// unwraps them again. Wrapped keys are safe to store next to the data they
// protect; unwrapping needs a Vault token allowed to decrypt with the key.
//
// Rotating the Transit key changes what new data keys are wrapped with;
// Transit keeps the old key versions, so keys wrapped before still unwrap.
//
// Errors never contain key material: Vault's error bodies carry messages
// only, and this type never formats keys into errors.
type Transit struct {
	client *api.Client
	mount  string
	key    string
}

// NewTransit connects to Vault for the Transit key mount/key. cfg is the
// same Config the Broker uses (Address, Token and Timeout; TokenRole is not
// used). Default mount: DefaultTransitMount. Default key: DefaultTransitKey.
// It does not contact the server.
func NewTransit(cfg Config, mount, key string) (*Transit, error) {
	mount = strings.Trim(mount, "/")
	if mount == "" {
		mount = DefaultTransitMount
	}
	if key == "" {
		key = DefaultTransitKey
	}
	if !transitMountRE.MatchString(mount) || hasDotSegment(mount) {
		return nil, fmt.Errorf("transit: invalid mount path %q", mount)
	}
	if !transitKeyRE.MatchString(key) || hasDotSegment(key) {
		return nil, fmt.Errorf("transit: invalid key name %q", key)
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Transit{client: c, mount: mount, key: key}, nil
}

// KeyID names the Transit key as "<mount>/<key>", e.g. "transit/airlock-payloads".
// It identifies the key, not a version: the version is part of each wrapped key.
func (t *Transit) KeyID() string { return t.mount + "/" + t.key }

// EnsureMount enables the Transit engine at the mount path if nothing is
// mounted there. It needs sudo-level rights on sys/mounts: for dev and tests;
// production mounts come from Terraform or deploy/vault.
func (t *Transit) EnsureMount(ctx context.Context) error {
	mounts, err := t.client.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return classify("list mounts", err)
	}
	if m, ok := mounts[t.mount+"/"]; ok {
		if m.Type != "transit" {
			return fmt.Errorf("mount transit: %s/ is a %s engine", t.mount, m.Type)
		}
		return nil
	}
	err = t.client.Sys().MountWithContext(ctx, t.mount, &api.MountInput{
		Type:        "transit",
		Description: "Airlock payload encryption keys",
	})
	if err != nil {
		return classify("mount transit", err)
	}
	return nil
}

// EnsureKey creates the Transit key (aes256-gcm96) if it does not exist and
// checks that an existing one can wrap data keys. For dev and tests;
// production keys come from Terraform or deploy/vault.
func (t *Transit) EnsureKey(ctx context.Context) error {
	s, err := t.client.Logical().ReadWithContext(ctx, t.path("keys"))
	if err != nil {
		return classify("read transit key", err)
	}
	if s == nil || s.Data == nil {
		_, err := t.client.Logical().WriteWithContext(ctx, t.path("keys"), map[string]any{"type": "aes256-gcm96"})
		if err != nil {
			return classify("create transit key", err)
		}
		return nil
	}
	if enc, _ := s.Data["supports_encryption"].(bool); !enc {
		return fmt.Errorf("transit key %s: type %v cannot encrypt", t.KeyID(), s.Data["type"])
	}
	if derived, _ := s.Data["derived"].(bool); derived {
		return fmt.Errorf("transit key %s: derived keys are not supported", t.KeyID())
	}
	return nil
}

// DataKey returns a new random AES-256 key and its wrapped form
// ("vault:v<N>:…"). The plaintext key is for this process's memory only:
// never log, persist or send it; store the wrapped form instead.
func (t *Transit) DataKey(ctx context.Context) (plaintext []byte, wrapped string, err error) {
	s, err := t.client.Logical().WriteWithContext(ctx, t.path("datakey/plaintext"), map[string]any{
		"bits": dataKeyBytes * 8,
	})
	if err != nil {
		return nil, "", classify("transit data key", err)
	}
	if s == nil || s.Data == nil {
		return nil, "", errors.New("transit data key: empty response")
	}
	wrapped, _ = s.Data["ciphertext"].(string)
	if !strings.HasPrefix(wrapped, "vault:v") {
		return nil, "", errors.New("transit data key: response has no wrapped key")
	}
	plaintext, err = decodeKey(s.Data["plaintext"])
	if err != nil {
		return nil, "", fmt.Errorf("transit data key: %w", err)
	}
	return plaintext, wrapped, nil
}

// Unwrap decrypts a wrapped data key returned by DataKey, with whichever
// version of the Transit key wrapped it.
func (t *Transit) Unwrap(ctx context.Context, wrapped string) ([]byte, error) {
	if !strings.HasPrefix(wrapped, "vault:v") {
		return nil, errors.New("unwrap data key: not a Transit ciphertext")
	}
	s, err := t.client.Logical().WriteWithContext(ctx, t.path("decrypt"), map[string]any{
		"ciphertext": wrapped,
	})
	if err != nil {
		return nil, classify("unwrap data key", err)
	}
	if s == nil || s.Data == nil {
		return nil, errors.New("unwrap data key: empty response")
	}
	key, err := decodeKey(s.Data["plaintext"])
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	return key, nil
}

// Rotate adds a new version of the Transit key; new data keys are wrapped
// with it. Old versions stay available for Unwrap unless an operator raises
// the key's min_decryption_version.
func (t *Transit) Rotate(ctx context.Context) error {
	if _, err := t.client.Logical().WriteWithContext(ctx, t.path("keys")+"/rotate", nil); err != nil {
		return classify("rotate transit key", err)
	}
	return nil
}

// hasDotSegment reports a "." or ".." path segment, which would make a
// request address another path than the Transit key's.
func hasDotSegment(p string) bool {
	return slices.ContainsFunc(strings.Split(p, "/"), func(s string) bool { return s == "." || s == ".." })
}

func (t *Transit) path(op string) string { return t.mount + "/" + op + "/" + t.key }

// decodeKey decodes a base64 data key and checks its size. Its errors never
// include the value.
func decodeKey(v any) ([]byte, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return nil, errors.New("response has no plaintext key")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("plaintext key is not base64")
	}
	if len(key) != dataKeyBytes {
		return nil, fmt.Errorf("plaintext key has %d bytes, want %d", len(key), dataKeyBytes)
	}
	return key, nil
}
