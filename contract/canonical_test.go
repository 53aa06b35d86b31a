package contract_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

func plainRequest() contract.CycleRequest {
	return contract.CycleRequest{AgentID: "a", CycleID: "c", Actions: []policy.Proposal{{Type: "t"}},
		Signature: &contract.RequestSignature{SignedAt: "2026-01-01T00:00:00Z"}}
}

// Without version and correlation_id the bytes are v1's exactly (what
// every signer, running cycle and recorded history has); with either, v2
// with both keys. Neither can be added to or stripped from signed bytes
// without changing them.
func TestCanonicalRequestVersions(t *testing.T) {
	const v1 = `{"actions":[{"params":{},"rationale":"","type":"t"}],"agent_id":"a","cycle_id":"c","format":"airlock.cycle-request.v1","principal":"","signed_at":"2026-01-01T00:00:00Z","thoughts":[]}`
	const v2 = `{"actions":[{"params":{},"rationale":"","type":"t"}],"agent_id":"a","correlation_id":"%s","cycle_id":"c","format":"airlock.cycle-request.v2","principal":"","signed_at":"2026-01-01T00:00:00Z","thoughts":[],"version":"%s"}`
	for name, tc := range map[string]struct{ version, correlation, want string }{
		"neither: v1, byte for byte": {want: v1},
		"version":                    {version: "v2.1", want: fmt.Sprintf(v2, "", "v2.1")},
		"correlation_id only":        {correlation: "in-7", want: `{"actions":[{"params":{},"rationale":"","type":"t"}],"agent_id":"a","correlation_id":"in-7","cycle_id":"c","format":"airlock.cycle-request.v2","principal":"","signed_at":"2026-01-01T00:00:00Z","thoughts":[],"version":""}`},
		"both":                       {version: "v2", correlation: "in-7", want: `{"actions":[{"params":{},"rationale":"","type":"t"}],"agent_id":"a","correlation_id":"in-7","cycle_id":"c","format":"airlock.cycle-request.v2","principal":"","signed_at":"2026-01-01T00:00:00Z","thoughts":[],"version":"v2"}`},
	} {
		t.Run(name, func(t *testing.T) {
			req := plainRequest()
			req.Version, req.CorrelationID = tc.version, tc.correlation
			got, err := contract.CanonicalRequest(req)
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
			if tc.version == "" && tc.correlation == "" {
				assert.Equal(t, contract.CanonicalFormat, contract.CanonicalFormatOf(req))
				return
			}
			assert.Equal(t, contract.CanonicalFormatV2, contract.CanonicalFormatOf(req))
			plain, err := contract.CanonicalRequest(plainRequest())
			require.NoError(t, err)
			assert.NotEqual(t, string(plain), string(got), "stripping the fields changes the signed bytes")
		})
	}
}

func TestVersionAndCorrelationAreValidated(t *testing.T) {
	for name, tc := range map[string]struct {
		version, correlation, field string
	}{
		"good":                   {version: "v2.1+build-7", correlation: "input-1"},
		"version with a space":   {version: "v 2", field: "version"},
		"version too long":       {version: strings.Repeat("v", 65), field: "version"},
		"correlation with slash": {correlation: "a/b", field: "correlation_id"},
	} {
		t.Run(name, func(t *testing.T) {
			req := plainRequest()
			req.Version, req.CorrelationID = tc.version, tc.correlation
			err := req.Validate()
			if tc.field == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.field)
		})
	}
}
