package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// QueryAudit returns the cycle's audit trail so far.
const QueryAudit = "audit"

// Audit entry kinds.
const (
	AuditCycle    = "cycle"    // started / finished
	AuditThought  = "thought"  // a reasoning step
	AuditProposal = "proposal" // an action the agent proposed
	AuditPolicy   = "policy"   // the rule that decided an action's mode
	AuditDecision = "decision" // a human decision
	AuditLease    = "lease"    // a credential leased (accessor only)
	AuditJob      = "job"      // a Job ran
	AuditResult   = "result"   // an action's outcome
)

// AuditEntry is one link of a cycle's tamper-evident trail: each entry's
// Hash covers its content and the previous entry's Hash, so changing,
// dropping or reordering any entry breaks every hash after it.
type AuditEntry struct {
	Seq     int            `json:"seq"`
	At      time.Time      `json:"at"`
	Kind    string         `json:"kind"`
	Action  *int           `json:"action,omitempty"`
	Summary string         `json:"summary"`
	Data    map[string]any `json:"data,omitempty"`
	Prev    string         `json:"prev"`
	Hash    string         `json:"hash"`
}

// hashEntry computes an entry's hash from everything but the hash itself.
func hashEntry(e AuditEntry) string {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "" // never a valid hash: an entry JSON cannot carry never verifies
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// AuditBreak says where a trail stops being trustworthy.
type AuditBreak struct {
	Seq    int
	Reason string
}

func (b *AuditBreak) Error() string {
	return fmt.Sprintf("audit trail broken at entry %d: %s", b.Seq, b.Reason)
}

// VerifyAudit checks a trail's chain and returns the first break, or nil.
func VerifyAudit(trail []AuditEntry) *AuditBreak {
	prev := ""
	for i, e := range trail {
		if e.Seq != i {
			return &AuditBreak{Seq: i, Reason: fmt.Sprintf("sequence number is %d, want %d (entry missing or reordered)", e.Seq, i)}
		}
		if e.Prev != prev {
			return &AuditBreak{Seq: i, Reason: "does not link to the previous entry"}
		}
		if h := hashEntry(e); h == "" || h != e.Hash {
			return &AuditBreak{Seq: i, Reason: "content does not match its hash (entry altered)"}
		}
		prev = e.Hash
	}
	return nil
}

// AppendAudit chains a new entry to trail. The entry holds exactly what its
// JSON export says (UTC time, valid UTF-8, data through JSON), so it
// verifies the same after an export as before.
func AppendAudit(trail []AuditEntry, at time.Time, kind string, action *int, summary string, data map[string]any) []AuditEntry {
	e := AuditEntry{Seq: len(trail), At: at.UTC(), Kind: strings.ToValidUTF8(kind, "\uFFFD"), Action: action,
		Summary: strings.ToValidUTF8(summary, "\uFFFD"), Data: normalize(data)}
	if n := len(trail); n > 0 {
		e.Prev = trail[n-1].Hash
	}
	e.Hash = hashEntry(e)
	return append(trail, e)
}

// normalize round-trips data through JSON so the hash computed now matches
// the one recomputed from the stored trail.
func normalize(data map[string]any) map[string]any {
	if data == nil {
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// AuditAgent entries record the agent's state a cycle planned with.
const AuditAgent = "agent"
