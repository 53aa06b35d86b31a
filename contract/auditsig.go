package contract

import (
	"errors"
	"fmt"
	"strconv"
)

// AuditSignature entries carry a Vault Transit signature over the chain
// head (the hash of entry HeadSeq): the hash chain alone is unkeyed, so
// whoever rewrites an entry can recompute every later hash; they cannot
// make the audit key sign the new head. Cycles sign at each human decision
// and when they end (the "final" signature). A failed signing is recorded
// too (Data "error"), so a trail never looks signed when it is not.
const AuditSignature = "signature"

// HeadSignature is what an AuditSignature entry's Data holds.
type HeadSignature struct {
	WorkflowID string `json:"workflow_id"`
	HeadSeq    int    `json:"head_seq"`
	Head       string `json:"head"`
	Key        string `json:"key,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
	Signature  string `json:"signature,omitempty"`
	Final      bool   `json:"final,omitempty"`
	// Error says why the head could not be signed.
	Error string `json:"error,omitempty"`
}

// Data is the entry data the workflow records.
func (h HeadSignature) Data() map[string]any {
	d := map[string]any{"workflow_id": h.WorkflowID, "head_seq": h.HeadSeq, "head": h.Head, "final": h.Final}
	if h.Error != "" {
		d["error"] = h.Error
	} else {
		d["key"], d["key_version"], d["signature"] = h.Key, h.KeyVersion, h.Signature
	}
	return d
}

// HeadMessage is the exact byte string signed for a chain head: it binds
// the cycle, the position and the hash, so a signature cannot be moved to
// another cycle or another point of the same trail.
func HeadMessage(workflowID string, seq int, head string) []byte {
	return []byte("airlock audit head v1\nworkflow " + workflowID + "\nseq " + strconv.Itoa(seq) + "\nhash " + head + "\n")
}

// headSignatureOf reads an AuditSignature entry's data (after a JSON round
// trip numbers are float64).
func headSignatureOf(e AuditEntry) (HeadSignature, error) {
	var h HeadSignature
	str := func(k string) string { s, _ := e.Data[k].(string); return s }
	num := func(k string) (int, bool) {
		f, ok := e.Data[k].(float64)
		if !ok || f != float64(int(f)) {
			return 0, false
		}
		return int(f), true
	}
	h.WorkflowID, h.Head, h.Key, h.Signature, h.Error = str("workflow_id"), str("head"), str("key"), str("signature"), str("error")
	h.Final, _ = e.Data["final"].(bool)
	var ok bool
	if h.HeadSeq, ok = num("head_seq"); !ok {
		return h, errors.New("no head_seq")
	}
	h.KeyVersion, _ = num("key_version")
	return h, nil
}

// VerifySignatureFunc checks a Transit signature over msg and returns the
// key version that made it.
type VerifySignatureFunc func(msg []byte, signature string) (keyVersion int, err error)

// SignatureReport says what a trail's signatures prove.
type SignatureReport struct {
	// Signed is how many signatures verified.
	Signed int
	// Last is the last verified signature; Covered is its HeadSeq + 1:
	// entries 0..Covered-1 cannot have been rewritten.
	Last    HeadSignature
	Covered int
	// Final: the last signature is the cycle's final one and nothing but
	// it follows the head it signs.
	Final bool
	// Unsigned lists the entries recording a decision-time head that could
	// not be signed (Vault unreachable). The final signature covers those
	// heads too: the chain is hash-linked.
	Unsigned []int
}

// ErrAuditUnsigned: a trail, or its tail, carries no valid signature.
var ErrAuditUnsigned = errors.New("audit trail is not signed")

// VerifyAuditSignatures checks every AuditSignature entry of a trail whose
// hash chain verifies (VerifyAudit first) and fails closed: any signature
// that does not verify, any recorded signing failure, a trail of cycle
// workflowID with no signature, or entries after the last signed head
// other than its own signature entry (a running cycle, or a truncated or
// extended trail) are errors. workflowID "" takes the trail's own.
func VerifyAuditSignatures(trail []AuditEntry, workflowID string, verify VerifySignatureFunc) (SignatureReport, error) {
	var r SignatureReport
	if b := VerifyAudit(trail); b != nil {
		return r, b
	}
	last := -1
	for _, e := range trail {
		if e.Kind != AuditSignature {
			continue
		}
		h, err := headSignatureOf(e)
		if err != nil {
			return r, fmt.Errorf("entry %d: malformed signature entry: %v", e.Seq, err)
		}
		if h.Error != "" && !h.Final {
			r.Unsigned = append(r.Unsigned, e.Seq)
			continue
		}
		if h.Error != "" {
			return r, fmt.Errorf("%w: entry %d: the head (entry %d) could not be signed: %s", ErrAuditUnsigned, e.Seq, h.HeadSeq, h.Error)
		}
		if workflowID == "" {
			workflowID = h.WorkflowID
		}
		if h.WorkflowID != workflowID {
			return r, fmt.Errorf("entry %d: signature is for cycle %q, not %q", e.Seq, h.WorkflowID, workflowID)
		}
		if h.HeadSeq < 0 || h.HeadSeq >= e.Seq || trail[h.HeadSeq].Hash != h.Head {
			return r, fmt.Errorf("entry %d: signed head (entry %d) is not the trail's entry %d", e.Seq, h.HeadSeq, h.HeadSeq)
		}
		v, err := verify(HeadMessage(h.WorkflowID, h.HeadSeq, h.Head), h.Signature)
		if err != nil {
			return r, fmt.Errorf("entry %d: signature over entry %d: %w", e.Seq, h.HeadSeq, err)
		}
		h.KeyVersion = v
		r.Signed, r.Last, r.Covered, last = r.Signed+1, h, h.HeadSeq+1, e.Seq
	}
	if r.Signed == 0 {
		return r, fmt.Errorf("%w: no chain-head signature in %d entries (a cycle older than signing, or the signatures were removed)", ErrAuditUnsigned, len(trail))
	}
	if !r.Last.Final || last != len(trail)-1 || r.Covered != len(trail)-1 {
		return r, fmt.Errorf("%w: entries %d to %d follow the last signed head (entry %d) without a final signature: the cycle is still running, or the trail was cut or extended",
			ErrAuditUnsigned, r.Covered, len(trail)-1, r.Covered-1)
	}
	r.Final = true
	return r, nil
}
