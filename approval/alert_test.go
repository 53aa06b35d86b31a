package approval

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/policy"
)

func TestPromoteButtonValues(t *testing.T) {
	for name, tc := range map[string]struct {
		v    PromoteButtonValue
		want string
		bad  bool
	}{
		"class":                  {v: PromoteButtonValue{AgentID: "a", Class: policy.ClassWrite, To: policy.PhaseAdvisory}, want: "p1|a|write|advisory"},
		"version":                {v: PromoteButtonValue{AgentID: "a", Version: "v2.1"}, want: "pv1|a|v2.1"},
		"version and class":      {v: PromoteButtonValue{AgentID: "a", Version: "v2", Class: policy.ClassWrite}, bad: true},
		"malformed version":      {v: PromoteButtonValue{AgentID: "a", Version: "v 2"}, bad: true},
		"version with a pipe":    {v: PromoteButtonValue{AgentID: "a", Version: "v|2"}, bad: true},
		"promote back to shadow": {v: PromoteButtonValue{AgentID: "a", Class: policy.ClassWrite, To: policy.PhaseShadow}, bad: true},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := tc.v.Encode()
			if tc.bad {
				assert.ErrorIs(t, err, ErrBadButtonValue)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, s)
			back, err := ParsePromoteButtonValue(s)
			require.NoError(t, err)
			assert.Equal(t, tc.v, back)
		})
	}
	_, err := ParsePromoteButtonValue("pv1|a|v 2")
	assert.ErrorIs(t, err, ErrBadButtonValue)
}

// Offers carry Promote and Not yet with the same value; other alerts have
// no buttons.
func TestOffersHavePromoteAndNotYet(t *testing.T) {
	for name, a := range map[string]contract.AgentAlert{
		"class":   {AgentID: "a", Kind: contract.AlertPromotionOffered, Class: policy.ClassWrite, From: policy.PhaseShadow, To: policy.PhaseAdvisory, Needed: 1},
		"version": {AgentID: "a", Kind: contract.AlertVersionOffered, Version: "v2", Needed: 1, Canary: &contract.CanaryEvidence{Version: "v2", Pairs: 20, Agreed: 20}},
	} {
		t.Run(name, func(t *testing.T) {
			blocks, err := AgentAlertMessage(a)
			require.NoError(t, err)
			raw, err := json.Marshal(blocks)
			require.NoError(t, err)
			js := string(raw)
			assert.Contains(t, js, `"action_id":"`+ActionPromote+`"`)
			assert.Contains(t, js, `"action_id":"`+ActionNotYet+`"`)
			assert.Contains(t, js, "Not yet")
			if a.Version != "" {
				assert.Contains(t, js, "pv1|a|v2")
				assert.Contains(t, js, "20 paired with the trusted version (20 same actions, 0 different)")
			}
		})
	}
	blocks, err := AgentAlertMessage(contract.AgentAlert{AgentID: "a", Kind: contract.TransitionDemoted, Class: policy.ClassWrite})
	require.NoError(t, err)
	raw, _ := json.Marshal(blocks)
	assert.NotContains(t, string(raw), ActionNotYet)
}

// A signed "Not yet" click asks the promoter to decline, as the clicking
// user; a signed "Promote" on a version offer asks to promote the version.
func TestNotYetAndVersionClicksReachThePromoter(t *testing.T) {
	var got []contract.PromoteRequest
	h, err := NewHandler(HandlerConfig{SigningSecret: testSecret, Decider: newFakeDecider(1),
		Promoter: PromoterFunc(func(_ context.Context, agentID string, req contract.PromoteRequest) (contract.Promotion, error) {
			assert.Equal(t, "a", agentID)
			got = append(got, req)
			st := contract.PromotionPromoted
			if req.Decline {
				st = contract.PromotionDeclined
			}
			return contract.Promotion{Class: req.Class, Version: req.Version, Status: st, To: policy.PhaseAdvisory}, nil
		})})
	require.NoError(t, err)
	defer h.Close()
	for i, c := range []struct{ action, value string }{
		{ActionNotYet, "p1|a|write|advisory"},
		{ActionNotYet, "pv1|a|v2"},
		{ActionPromote, "pv1|a|v2"},
	} {
		body := formBody(clickPayload(t, clickSpec{User: "U1", ActionID: c.action, Value: c.value, ActionTS: "1700000000.00010" + string(rune('0'+i))}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, signedRequest(testSecret, time.Now(), body))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	}
	want := []contract.PromoteRequest{
		{Class: policy.ClassWrite, Decline: true, By: []string{"U1"}, Via: "slack"},
		{Version: "v2", Decline: true, By: []string{"U1"}, Via: "slack"},
		{Version: "v2", By: []string{"U1"}, Via: "slack"},
	}
	assert.Equal(t, want, got)
}
