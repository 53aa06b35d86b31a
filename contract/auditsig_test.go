package contract_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/airlockhq/airlock/contract"
)

const sigWF = "cycle/a/c1"

// localKey stands in for the Transit key (the e2e test uses Vault's):
// "vault:v1:" + base64(ed25519 signature).
type localKey struct{ priv ed25519.PrivateKey }

func (k localKey) sign(msg []byte) string {
	return "vault:v1:" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.priv, msg))
}

func (k localKey) verify(msg []byte, sig string) (int, error) {
	b, err := base64.StdEncoding.DecodeString(sig[len("vault:v1:"):])
	if err != nil || !ed25519.Verify(k.priv.Public().(ed25519.PublicKey), msg, b) {
		return 0, errors.New("signature does not verify")
	}
	return 1, nil
}

// signHead appends a signature entry over the trail's head, as the workflow does.
func signHead(k localKey, tr []contract.AuditEntry, wf string, final bool) []contract.AuditEntry {
	h := tr[len(tr)-1]
	hs := contract.HeadSignature{WorkflowID: wf, HeadSeq: h.Seq, Head: h.Hash, Key: "airlock-audit", KeyVersion: 1,
		Signature: k.sign(contract.HeadMessage(wf, h.Seq, h.Hash)), Final: final}
	return contract.AppendAudit(tr, h.At, contract.AuditSignature, nil, "signed", hs.Data())
}

// rehash recomputes every hash of a trail: what someone who rewrites it
// without the key can do.
func rehash(tr []contract.AuditEntry) []contract.AuditEntry {
	var out []contract.AuditEntry
	for _, e := range tr {
		out = contract.AppendAudit(out, e.At, e.Kind, e.Action, e.Summary, e.Data)
	}
	return out
}

func signedTrail(k localKey) []contract.AuditEntry {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var tr []contract.AuditEntry
	tr = contract.AppendAudit(tr, at, contract.AuditCycle, nil, "cycle started", nil)
	tr = contract.AppendAudit(tr, at, contract.AuditDecision, new(int), "approve by U2 via slack", map[string]any{"approver": "U2"})
	tr = signHead(k, tr, sigWF, false)
	tr = contract.AppendAudit(tr, at, contract.AuditResult, new(int), "scale: succeeded", nil)
	tr = contract.AppendAudit(tr, at, contract.AuditCycle, nil, "cycle finished: succeeded", nil)
	return signHead(k, tr, sigWF, true)
}

func TestSignedTrailVerifiesAndRewritesDoNot(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	k := localKey{priv}
	good := signedTrail(k)
	r, err := contract.VerifyAuditSignatures(good, sigWF, k.verify)
	require.NoError(t, err)
	assert.Equal(t, 2, r.Signed)
	assert.True(t, r.Final)
	assert.Equal(t, 4, r.Last.HeadSeq)

	clone := func() []contract.AuditEntry {
		out := make([]contract.AuditEntry, len(good))
		for i, e := range good {
			out[i] = e
			out[i].Data = map[string]any{}
			for k, v := range e.Data {
				out[i].Data[k] = v
			}
		}
		return out
	}
	tests := map[string]struct {
		tamper   func() []contract.AuditEntry
		wf       string
		unsigned bool
		want     string
	}{
		"approver rewritten and every hash recomputed": {tamper: func() []contract.AuditEntry {
			tr := clone()
			tr[1].Data["approver"], tr[1].Summary = "U1", "approve by U1 via slack"
			return rehash(tr)
		}, want: "signed head (entry 1) is not the trail's entry 1"},
		"rewritten, recomputed, and the signed head changed to match": {tamper: func() []contract.AuditEntry {
			tr := rehash(func() []contract.AuditEntry { tr := clone(); tr[3].Summary = "scale: skipped"; return tr }())
			tr[5].Data["head"] = tr[4].Hash
			return rehash(tr)
		}, want: "signature does not verify"},
		"final signature dropped": {tamper: func() []contract.AuditEntry {
			return clone()[:5]
		}, unsigned: true, want: "without a final signature"},
		"entry appended after the final signature": {tamper: func() []contract.AuditEntry {
			return contract.AppendAudit(clone(), time.Now(), contract.AuditResult, nil, "more", nil)
		}, unsigned: true, want: "entries 5 to 6"},
		"every signature removed": {tamper: func() []contract.AuditEntry {
			tr := clone()
			return rehash(append(tr[:2:2], tr[3:5]...))
		}, unsigned: true, want: "no chain-head signature"},
		"another cycle's trail": {tamper: clone, wf: "cycle/a/other", want: `signature is for cycle "cycle/a/c1"`},
		"signing failed": {tamper: func() []contract.AuditEntry {
			tr := clone()[:5]
			hs := contract.HeadSignature{WorkflowID: sigWF, HeadSeq: 4, Head: tr[4].Hash, Final: true, Error: "vault unavailable"}
			return contract.AppendAudit(tr, tr[4].At, contract.AuditSignature, nil, "NOT signed", hs.Data())
		}, unsigned: true, want: "could not be signed: vault unavailable"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tr := tc.tamper()
			wf := tc.wf
			if wf == "" {
				wf = sigWF
			}
			_, err := contract.VerifyAuditSignatures(tr, wf, k.verify)
			require.Error(t, err)
			assert.ErrorContains(t, err, tc.want)
			assert.Equal(t, tc.unsigned, errors.Is(err, contract.ErrAuditUnsigned), "%v", err)
		})
	}
}

// A decision-time head that could not be signed (Vault was down) does not
// make the trail unverifiable: the final signature covers it. Rewriting an
// entry before it still fails.
func TestAnUnsignedDecisionHeadIsCoveredByTheFinalSignature(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	k := localKey{priv}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var tr []contract.AuditEntry
	tr = contract.AppendAudit(tr, at, contract.AuditCycle, nil, "cycle started", nil)
	tr = contract.AppendAudit(tr, at, contract.AuditDecision, new(int), "approve by U2 via slack", map[string]any{"approver": "U2"})
	hs := contract.HeadSignature{WorkflowID: sigWF, HeadSeq: 1, Head: tr[1].Hash, Error: "vault unavailable"}
	tr = contract.AppendAudit(tr, at, contract.AuditSignature, nil, "NOT signed", hs.Data())
	tr = contract.AppendAudit(tr, at, contract.AuditCycle, nil, "cycle finished: succeeded", nil)
	tr = signHead(k, tr, sigWF, true)

	r, err := contract.VerifyAuditSignatures(tr, sigWF, k.verify)
	require.NoError(t, err)
	assert.True(t, r.Final)
	assert.Equal(t, []int{2}, r.Unsigned)

	forged := make([]contract.AuditEntry, len(tr))
	copy(forged, tr)
	forged[1].Data = map[string]any{"approver": "U9"}
	forged = rehash(forged)
	forged[len(forged)-1].Data = tr[len(tr)-1].Data // the old signature, over the old head
	_, err = contract.VerifyAuditSignatures(rehash(forged), sigWF, k.verify)
	require.Error(t, err, "a rewritten decision is caught by the final signature")
}
