// Package codec encrypts every Temporal payload Airlock writes, so workflow
// histories hold ciphertext only (security invariant 1). It is envelope
// encryption: each payload is sealed with AES-256-GCM under a data key; the
// data key comes from Vault Transit, which also wraps it, and the wrapped
// form travels in the payload's metadata. Reading a payload needs a Vault
// token allowed to unwrap with the Transit key — the worker, the CLI and the
// codec server behind the Temporal Web UI have one, Temporal itself does not.
//
// An encrypted payload looks like this:
//
//	metadata:
//	  encoding:            "binary/encrypted"
//	  encryption-cipher:   "AES256-GCM"
//	  encryption-key-id:   "transit/airlock-payloads"   (Transit mount/key)
//	  encryption-data-key: "vault:v3:…"                 (wrapped data key)
//	data: nonce (12 bytes) || AES-256-GCM(proto.Marshal(original payload)) || tag (16 bytes)
//
// Payloads without the "binary/encrypted" encoding pass through Decode
// unchanged, so histories written before encryption was enabled still read.
package codec

import (
	"bytes"
	"container/list"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

// Metadata keys and values of an encrypted payload.
const (
	MetadataEncoding = converter.MetadataEncoding // "encoding"
	MetadataCipher   = "encryption-cipher"
	MetadataKeyID    = "encryption-key-id"
	MetadataDataKey  = "encryption-data-key"

	// EncodingEncrypted is the encoding of every payload this codec writes;
	// the Temporal Web UI shows such payloads as encrypted until decoded.
	EncodingEncrypted = "binary/encrypted"
	// CipherAES256GCM is the only cipher written and accepted.
	CipherAES256GCM = "AES256-GCM"
)

// Defaults of Options.
const (
	DefaultMaxKeyAge  = 15 * time.Minute
	DefaultMaxKeyUses = 100_000
	DefaultCacheSize  = 1024
	DefaultTimeout    = 10 * time.Second
)

// maxKeyUsesLimit bounds how many messages one key seals with random 96-bit
// nonces (NIST SP 800-38D, 8.3).
const maxKeyUsesLimit = 1 << 32

// ErrIntegrity is returned by Decode for a payload whose ciphertext fails
// authentication: it was tampered with, truncated or corrupted.
var ErrIntegrity = errors.New("encrypted payload failed integrity check (tampered or corrupted)")

// KeySource hands out data keys and unwraps them; *vault.Transit is one.
type KeySource interface {
	// KeyID names the wrapping key; it is written into every payload and
	// checked on Decode.
	KeyID() string
	// DataKey returns a new 32-byte key and its wrapped form.
	DataKey(ctx context.Context) (plaintext []byte, wrapped string, err error)
	// Unwrap returns the key a wrapped form stands for.
	Unwrap(ctx context.Context, wrapped string) ([]byte, error)
}

// Options tune a Codec. The zero value uses the defaults.
type Options struct {
	// MaxKeyAge is how long one data key encrypts new payloads before Encode
	// asks for a new one. Bounds how much one leaked key exposes.
	// Default: 15m.
	MaxKeyAge time.Duration
	// MaxKeyUses is how many payloads one data key encrypts at most.
	// Default: 100000; at most 2^32 (the GCM random-nonce bound).
	MaxKeyUses int64
	// CacheSize is how many unwrapped data keys Decode keeps (least recently
	// used go first), so reading a history costs one Vault call per data
	// key, not per payload. Default: 1024.
	CacheSize int
	// Timeout bounds each Vault call made by Encode or Decode, which get no
	// context from the SDK. Default: 10s.
	Timeout time.Duration
}

// Codec is a converter.PayloadCodec that encrypts payloads with data keys
// from a KeySource. It is safe for concurrent use.
type Codec struct {
	keys  KeySource
	keyID string
	opts  Options
	now   func() time.Time

	// mu guards the current encryption key.
	mu      sync.Mutex
	current *dataKey

	cache *keyCache
}

var _ converter.PayloadCodec = (*Codec)(nil)

// dataKey is a data key ready to seal: its AEAD, never its raw bytes.
type dataKey struct {
	aead    cipher.AEAD
	wrapped string
	created time.Time
	uses    int64
}

// New returns a Codec that takes its data keys from keys. It does not
// contact Vault: the first Encode or Decode does.
func New(keys KeySource, opts Options) (*Codec, error) {
	if keys == nil {
		return nil, errors.New("codec: no key source")
	}
	if opts.MaxKeyAge == 0 {
		opts.MaxKeyAge = DefaultMaxKeyAge
	}
	if opts.MaxKeyUses == 0 {
		opts.MaxKeyUses = DefaultMaxKeyUses
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	switch {
	case opts.MaxKeyAge < 0:
		return nil, errors.New("codec: MaxKeyAge must be positive")
	case opts.MaxKeyUses < 0 || opts.MaxKeyUses > maxKeyUsesLimit:
		return nil, fmt.Errorf("codec: MaxKeyUses must be in 1..%d", int64(maxKeyUsesLimit))
	case opts.CacheSize < 0:
		return nil, errors.New("codec: CacheSize must be positive")
	case opts.Timeout < 0:
		return nil, errors.New("codec: Timeout must be positive")
	}
	id := keys.KeyID()
	if id == "" {
		return nil, errors.New("codec: key source has no key id")
	}
	return &Codec{keys: keys, keyID: id, opts: opts, now: time.Now, cache: newKeyCache(opts.CacheSize)}, nil
}

// DataConverter returns Temporal's default data converter with c applied to
// every payload. Use it in client.Options.DataConverter for the worker, the
// starter and the CLI alike.
func DataConverter(c *Codec) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter returns Temporal's default failure converter set to
// encrypt error messages and stack traces with c as well, which the default
// leaves in clear in the history. Use it in client.Options.FailureConverter
// next to DataConverter: a message that quotes a secret then stays
// ciphertext too (the Web UI decodes it through the codec server).
func FailureConverter(c *Codec) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          DataConverter(c),
		EncodeCommonAttributes: true,
	})
}

// Encode encrypts each payload into a new "binary/encrypted" payload.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if len(payloads) == 0 {
		return payloads, nil
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encrypt payload: marshal: %w", err)
		}
		k, err := c.sealKey()
		if err != nil {
			return nil, fmt.Errorf("encrypt payload: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				MetadataEncoding: []byte(EncodingEncrypted),
				MetadataCipher:   []byte(CipherAES256GCM),
				MetadataKeyID:    []byte(c.keyID),
				MetadataDataKey:  []byte(k.wrapped),
			},
			Data: k.aead.Seal(nil, nil, plain, additionalData(c.keyID, k.wrapped)),
		}
	}
	return out, nil
}

// Decode decrypts payloads Encode wrote and returns every other payload
// unchanged.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if len(payloads) == 0 {
		return payloads, nil
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if !IsEncrypted(p) {
			out[i] = p
			continue
		}
		d, err := c.decode(p)
		if err != nil {
			return nil, fmt.Errorf("decrypt payload: %w", err)
		}
		out[i] = d
	}
	return out, nil
}

// IsEncrypted reports whether p was written by a Codec.
func IsEncrypted(p *commonpb.Payload) bool {
	return p != nil && bytes.Equal(p.GetMetadata()[MetadataEncoding], []byte(EncodingEncrypted))
}

func (c *Codec) decode(p *commonpb.Payload) (*commonpb.Payload, error) {
	md := p.GetMetadata()
	if cph := string(md[MetadataCipher]); cph != CipherAES256GCM {
		return nil, fmt.Errorf("unsupported cipher %q", cph)
	}
	if id := string(md[MetadataKeyID]); id != c.keyID {
		return nil, fmt.Errorf("payload was encrypted under key %q, this codec uses %q", id, c.keyID)
	}
	wrapped := string(md[MetadataDataKey])
	if wrapped == "" {
		return nil, errors.New("payload has no wrapped data key")
	}
	aead, err := c.openKey(wrapped)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nil, p.GetData(), additionalData(c.keyID, wrapped))
	if err != nil {
		return nil, ErrIntegrity
	}
	var orig commonpb.Payload
	if err := proto.Unmarshal(plain, &orig); err != nil {
		return nil, fmt.Errorf("unmarshal decrypted payload: %w", err)
	}
	return &orig, nil
}

// additionalData binds the ciphertext to the format and to its key reference.
func additionalData(keyID, wrapped string) []byte {
	return []byte(CipherAES256GCM + "\x00" + keyID + "\x00" + wrapped)
}

// Rotate makes the next Encode fetch a new data key. Call it after the
// Transit key changed (rotated, or restored from scratch): payloads sealed
// since under the old data key could only be read by processes that
// cached it.
func (c *Codec) Rotate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.current = nil
}

// sealKey returns the current data key, fetching a new one when there is
// none or it is too old or used up.
func (c *Codec) sealKey() (*dataKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	k := c.current
	if k == nil || k.uses >= c.opts.MaxKeyUses || now.Sub(k.created) >= c.opts.MaxKeyAge {
		// Holding mu during the Vault call makes concurrent Encodes wait for
		// one new key instead of each fetching its own.
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		defer cancel()
		raw, wrapped, err := c.keys.DataKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("new data key: %w", err)
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, fmt.Errorf("new data key: %w", err)
		}
		k = &dataKey{aead: aead, wrapped: wrapped, created: now}
		c.current = k
		// What this process encrypts it usually reads back: no Vault call.
		c.cache.put(wrapped, aead)
	}
	k.uses++
	return k, nil
}

// openKey returns the AEAD of a wrapped data key, unwrapping it with the key
// source on a cache miss.
func (c *Codec) openKey(wrapped string) (cipher.AEAD, error) {
	if aead, ok := c.cache.get(wrapped); ok {
		return aead, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	raw, err := c.keys.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	c.cache.put(wrapped, aead)
	return aead, nil
}

// newAEAD builds AES-256-GCM with a random nonce prepended to each
// ciphertext, and wipes raw: from here on only the cipher holds the key.
func newAEAD(raw []byte) (cipher.AEAD, error) {
	defer clear(raw)
	if len(raw) != 32 {
		return nil, fmt.Errorf("data key has %d bytes, want 32", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// keyCache is a bounded map of unwrapped data keys; the least recently used
// key goes first.
type keyCache struct {
	mu    sync.Mutex
	size  int
	order *list.List // front: most recently used; values are *cacheEntry
	items map[string]*list.Element
}

type cacheEntry struct {
	wrapped string
	aead    cipher.AEAD
}

func newKeyCache(size int) *keyCache {
	return &keyCache{size: size, order: list.New(), items: map[string]*list.Element{}}
}

func (kc *keyCache) get(wrapped string) (cipher.AEAD, bool) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	e, ok := kc.items[wrapped]
	if !ok {
		return nil, false
	}
	kc.order.MoveToFront(e)
	return e.Value.(*cacheEntry).aead, true
}

func (kc *keyCache) put(wrapped string, aead cipher.AEAD) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	if e, ok := kc.items[wrapped]; ok {
		kc.order.MoveToFront(e)
		return
	}
	kc.items[wrapped] = kc.order.PushFront(&cacheEntry{wrapped: wrapped, aead: aead})
	for kc.order.Len() > kc.size {
		last := kc.order.Back()
		kc.order.Remove(last)
		delete(kc.items, last.Value.(*cacheEntry).wrapped)
	}
}

func (kc *keyCache) len() int {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	return kc.order.Len()
}
