package codec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/vault"
)

var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(devstack.Main(m, devstack.Options{Vault: true, Temporal: true}, &stack))
}

var mountSeq atomic.Int64

// newTransit enables the Transit engine at a fresh mount (sys/mounts) and
// creates the key there, so no two tests share key versions.
func newTransit(t *testing.T) *vault.Transit {
	t.Helper()
	mount := fmt.Sprintf("transit-codec-%d", mountSeq.Add(1))
	tr, err := vault.NewTransit(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken}, mount, "")
	require.NoError(t, err)
	require.NoError(t, tr.EnsureMount(t.Context()))
	require.NoError(t, tr.EnsureKey(t.Context()))
	return tr
}

// counted passes calls through to the real Transit and counts them.
type counted struct {
	*vault.Transit
	dataKeys, unwraps atomic.Int64
}

func (c *counted) DataKey(ctx context.Context) ([]byte, string, error) {
	c.dataKeys.Add(1)
	return c.Transit.DataKey(ctx)
}

func (c *counted) Unwrap(ctx context.Context, wrapped string) ([]byte, error) {
	c.unwraps.Add(1)
	return c.Transit.Unwrap(ctx, wrapped)
}

func newCodec(t *testing.T, keys KeySource, opts Options) *Codec {
	t.Helper()
	c, err := New(keys, opts)
	require.NoError(t, err)
	return c
}

const secret = "sk-live-51HfakeAPIkeyDoNotLog"

type request struct {
	Agent  string
	APIKey string
}

// payloads are what the SDK hands a codec: the default converter's output.
func payloads(t *testing.T, values ...any) []*commonpb.Payload {
	t.Helper()
	ps, err := converter.GetDefaultDataConverter().ToPayloads(values...)
	require.NoError(t, err)
	return ps.Payloads
}

func encode(t *testing.T, c *Codec, ps []*commonpb.Payload) []*commonpb.Payload {
	t.Helper()
	enc, err := c.Encode(ps)
	require.NoError(t, err)
	require.Len(t, enc, len(ps))
	return enc
}

func assertSame(t *testing.T, want, got []*commonpb.Payload) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		assert.True(t, proto.Equal(want[i], got[i]), "payload %d: want %v, got %v", i, want[i], got[i])
	}
}

func TestRoundTrip(t *testing.T) {
	tr := newTransit(t)
	c := newCodec(t, tr, Options{})
	orig := payloads(t, request{Agent: "sample", APIKey: secret}, []byte(secret), nil, 42)

	enc := encode(t, c, orig)
	for i, p := range enc {
		md := p.GetMetadata()
		assert.Equal(t, EncodingEncrypted, string(md[MetadataEncoding]), "payload %d", i)
		assert.Equal(t, CipherAES256GCM, string(md[MetadataCipher]))
		assert.Equal(t, tr.KeyID(), string(md[MetadataKeyID]))
		assert.True(t, strings.HasPrefix(string(md[MetadataDataKey]), "vault:v1:"))
		assert.False(t, bytes.Contains(p.GetData(), []byte(secret)), "payload %d holds the plaintext", i)
		assert.False(t, bytes.Contains(p.GetData(), []byte("json/plain")), "payload %d shows its inner encoding", i)
	}
	again := encode(t, c, orig)
	assert.NotEqual(t, enc[0].GetData(), again[0].GetData(), "same input, fresh nonce: different ciphertext")

	dec, err := c.Decode(enc)
	require.NoError(t, err)
	assertSame(t, orig, dec)

	var got request
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(dec[0], &got))
	assert.Equal(t, secret, got.APIKey)
}

func TestDecodePassesForeignPayloadsThrough(t *testing.T) {
	c := newCodec(t, newTransit(t), Options{})
	plain := payloads(t, "written before encryption was enabled")
	plain = append(plain, &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/zlib")}, Data: []byte{1, 2}})

	dec, err := c.Decode(plain)
	require.NoError(t, err)
	assertSame(t, plain, dec)

	mixed := append(encode(t, c, payloads(t, secret)), plain...)
	dec, err = c.Decode(mixed)
	require.NoError(t, err)
	assertSame(t, append(payloads(t, secret), plain...), dec)
}

func TestTamperedPayloads(t *testing.T) {
	tr := newTransit(t)
	c := newCodec(t, tr, Options{})
	_, otherWrapped, err := tr.DataKey(t.Context())
	require.NoError(t, err)

	tests := map[string]struct {
		tamper  func(p *commonpb.Payload)
		wantIs  error
		wantErr string
	}{
		"flipped ciphertext bit": {
			tamper: func(p *commonpb.Payload) { p.Data[len(p.Data)/2] ^= 0x01 },
			wantIs: ErrIntegrity,
		},
		"flipped nonce bit": {
			tamper: func(p *commonpb.Payload) { p.Data[0] ^= 0x80 },
			wantIs: ErrIntegrity,
		},
		"truncated": {
			tamper: func(p *commonpb.Payload) { p.Data = p.Data[:10] },
			wantIs: ErrIntegrity,
		},
		"data key swapped for another valid one": {
			tamper: func(p *commonpb.Payload) { p.Metadata[MetadataDataKey] = []byte(otherWrapped) },
			wantIs: ErrIntegrity,
		},
		"garbled data key": {
			tamper:  func(p *commonpb.Payload) { p.Metadata[MetadataDataKey] = []byte("vault:v1:AAAA") },
			wantErr: "unwrap data key: HTTP 400",
		},
		"no data key": {
			tamper:  func(p *commonpb.Payload) { delete(p.Metadata, MetadataDataKey) },
			wantErr: "no wrapped data key",
		},
		"other key id": {
			tamper:  func(p *commonpb.Payload) { p.Metadata[MetadataKeyID] = []byte("transit/elsewhere") },
			wantErr: `encrypted under key "transit/elsewhere"`,
		},
		"unknown cipher": {
			tamper:  func(p *commonpb.Payload) { p.Metadata[MetadataCipher] = []byte("ROT13") },
			wantErr: `unsupported cipher "ROT13"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			enc := encode(t, c, payloads(t, request{APIKey: secret}))
			tc.tamper(enc[0])
			// A fresh codec, as on another process, must unwrap for itself.
			for _, dec := range []*Codec{c, newCodec(t, tr, Options{})} {
				got, err := dec.Decode(enc)
				require.Error(t, err)
				assert.Nil(t, got)
				assert.ErrorContains(t, err, "decrypt payload: ")
				if tc.wantIs != nil {
					assert.ErrorIs(t, err, tc.wantIs)
					assert.ErrorContains(t, err, "integrity check (tampered or corrupted)")
				}
				if tc.wantErr != "" {
					assert.ErrorContains(t, err, tc.wantErr)
				}
				assert.NotContains(t, err.Error(), secret)
			}
		})
	}
}

func TestTransitRotation(t *testing.T) {
	tr := newTransit(t)
	// One data key per payload, so the second Encode asks Vault again.
	c := newCodec(t, tr, Options{MaxKeyUses: 1})
	before := payloads(t, "before rotation "+secret)
	after := payloads(t, "after rotation "+secret)

	encBefore := encode(t, c, before)
	require.NoError(t, tr.Rotate(t.Context()))
	encAfter := encode(t, c, after)
	assert.True(t, strings.HasPrefix(string(encBefore[0].Metadata[MetadataDataKey]), "vault:v1:"))
	assert.True(t, strings.HasPrefix(string(encAfter[0].Metadata[MetadataDataKey]), "vault:v2:"))

	restarted := newCodec(t, tr, Options{})
	for name, dec := range map[string]*Codec{"same codec": c, "restarted codec": restarted} {
		t.Run(name, func(t *testing.T) {
			got, err := dec.Decode(encBefore)
			require.NoError(t, err)
			assertSame(t, before, got)
			got, err = dec.Decode(encAfter)
			require.NoError(t, err)
			assertSame(t, after, got)
		})
	}
}

func TestDataKeyRotation(t *testing.T) {
	wrappedKeys := func(ps []*commonpb.Payload) []string {
		var ks []string
		for _, p := range ps {
			ks = append(ks, string(p.Metadata[MetadataDataKey]))
		}
		return ks
	}

	t.Run("after MaxKeyUses payloads", func(t *testing.T) {
		keys := &counted{Transit: newTransit(t)}
		c := newCodec(t, keys, Options{MaxKeyUses: 2})
		ks := wrappedKeys(encode(t, c, payloads(t, 1, 2, 3, 4, 5)))
		assert.Equal(t, ks[0], ks[1])
		assert.NotEqual(t, ks[1], ks[2])
		assert.Equal(t, ks[2], ks[3])
		assert.NotEqual(t, ks[3], ks[4])
		assert.EqualValues(t, 3, keys.dataKeys.Load())
	})

	t.Run("after Rotate", func(t *testing.T) {
		keys := &counted{Transit: newTransit(t)}
		c := newCodec(t, keys, Options{})
		first := wrappedKeys(encode(t, c, payloads(t, 1, 2)))
		c.Rotate()
		second := wrappedKeys(encode(t, c, payloads(t, 3)))
		assert.Equal(t, first[0], first[1])
		assert.NotEqual(t, first[1], second[0], "a new data key after Rotate")
		assert.EqualValues(t, 2, keys.dataKeys.Load())
	})

	t.Run("after MaxKeyAge", func(t *testing.T) {
		keys := &counted{Transit: newTransit(t)}
		c := newCodec(t, keys, Options{MaxKeyAge: time.Minute})
		now := time.Now()
		c.now = func() time.Time { return now }
		first := wrappedKeys(encode(t, c, payloads(t, 1, 2)))
		now = now.Add(59 * time.Second)
		second := wrappedKeys(encode(t, c, payloads(t, 3)))
		now = now.Add(time.Second)
		third := wrappedKeys(encode(t, c, payloads(t, 4)))
		assert.Equal(t, first[0], first[1])
		assert.Equal(t, first[0], second[0])
		assert.NotEqual(t, first[0], third[0])
		assert.EqualValues(t, 2, keys.dataKeys.Load())
	})

	t.Run("concurrent encodes share one key", func(t *testing.T) {
		keys := &counted{Transit: newTransit(t)}
		c := newCodec(t, keys, Options{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := c.Encode(payloads(t, secret))
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		assert.EqualValues(t, 1, keys.dataKeys.Load())
	})
}

func TestDecodeKeyCache(t *testing.T) {
	tr := newTransit(t)
	writer := newCodec(t, tr, Options{MaxKeyUses: 2})
	orig := payloads(t, 1, 2, 3, 4, 5, 6) // three data keys
	enc := encode(t, writer, orig)

	t.Run("the writer reads back without Vault", func(t *testing.T) {
		keys := &counted{Transit: tr}
		c := newCodec(t, keys, Options{MaxKeyUses: 2})
		enc := encode(t, c, orig)
		_, err := c.Decode(enc)
		require.NoError(t, err)
		assert.Zero(t, keys.unwraps.Load())
	})

	t.Run("one unwrap per data key", func(t *testing.T) {
		keys := &counted{Transit: tr}
		reader := newCodec(t, keys, Options{})
		for range 3 {
			got, err := reader.Decode(enc)
			require.NoError(t, err)
			assertSame(t, orig, got)
		}
		assert.EqualValues(t, 3, keys.unwraps.Load())
	})

	t.Run("bounded", func(t *testing.T) {
		keys := &counted{Transit: tr}
		reader := newCodec(t, keys, Options{CacheSize: 2})
		_, err := reader.Decode(enc)
		require.NoError(t, err)
		assert.Equal(t, 2, reader.cache.len())
		// The first key was evicted; the last is still cached.
		_, err = reader.Decode(enc[4:])
		require.NoError(t, err)
		assert.EqualValues(t, 3, keys.unwraps.Load())
		_, err = reader.Decode(enc[:1])
		require.NoError(t, err)
		assert.EqualValues(t, 4, keys.unwraps.Load())
	})
}

func TestVaultDownIsAnOutage(t *testing.T) {
	down, err := vault.NewTransit(vault.Config{Address: "http://127.0.0.1:1", Token: "t"}, "", "")
	require.NoError(t, err)
	c := newCodec(t, down, Options{Timeout: time.Second})
	_, err = c.Encode(payloads(t, secret))
	assert.ErrorIs(t, err, vault.ErrUnavailable, "callers (the SDK) retry outages")

	enc := encode(t, newCodec(t, newTransit(t), Options{}), payloads(t, secret))
	enc[0].Metadata[MetadataKeyID] = []byte(down.KeyID())
	_, err = c.Decode(enc)
	assert.ErrorIs(t, err, vault.ErrUnavailable)
}

func TestNewValidates(t *testing.T) {
	tr := newTransit(t)
	tests := map[string]struct {
		keys    KeySource
		opts    Options
		wantErr string
	}{
		"no key source":    {opts: Options{}, wantErr: "no key source"},
		"negative age":     {keys: tr, opts: Options{MaxKeyAge: -time.Second}, wantErr: "MaxKeyAge"},
		"too many uses":    {keys: tr, opts: Options{MaxKeyUses: 1<<32 + 1}, wantErr: "MaxKeyUses"},
		"negative cache":   {keys: tr, opts: Options{CacheSize: -1}, wantErr: "CacheSize"},
		"negative timeout": {keys: tr, opts: Options{Timeout: -1}, wantErr: "Timeout"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.keys, tc.opts)
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}

	c := newCodec(t, tr, Options{})
	assert.Equal(t, Options{MaxKeyAge: 15 * time.Minute, MaxKeyUses: 100_000, CacheSize: 1024, Timeout: 10 * time.Second}, c.opts)
}
