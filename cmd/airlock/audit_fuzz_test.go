package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlockhq/airlock/contract"
	"github.com/airlockhq/airlock/infraaudit"
)

// FuzzAuditFile runs `airlock cycle audit --file` on fuzzed JSON-lines
// exports. It calls runAudit, not run: cobra keeps every command tree's
// flag completions in a process-wide table, which millions of run calls
// would grow without bound. Invariants: nothing panics; the command succeeds exactly when
// the file reads and its chain verifies, and fails with errAuditBroken when
// it reads but does not verify; a verified trail re-exported with --json
// reads back to the same entries and still verifies; and a changed byte in
// a verified export either fails to read, changes no entry, or breaks the
// chain.
func FuzzAuditFile(f *testing.F) {
	at := time.Date(2030, 1, 2, 15, 4, 5, 123456789, time.UTC)
	f.Add(seedExport(f,
		contract.AuditEntry{At: at, Kind: contract.AuditCycle, Summary: "cycle started", Data: map[string]any{"agent": "sample", "cycle": "c-1"}},
		contract.AuditEntry{At: at, Kind: contract.AuditThought, Summary: "p99 is high <&>", Data: map[string]any{"confidence": 0.8, "step": 1.0}},
		contract.AuditEntry{At: at.Add(time.Second), Kind: contract.AuditDecision, Action: new(int), Summary: "approve", Data: map[string]any{"approver": "U2", "via": "slack"}},
	), uint32(0x4321), byte(1))
	f.Add(seedExport(f, contract.AuditEntry{At: at, Kind: contract.AuditResult, Summary: "ünïcødé\u2028", Data: map[string]any{"n": 1e21, "list": []any{nil, true, "x"}}}), uint32(9), byte(0x20))
	f.Add([]byte("\n\n  \n"), uint32(0), byte(1))
	f.Add([]byte(`{"seq":0,"hash":""}`+"\n"+`{"seq":"one"}`), uint32(0), byte(1))
	f.Add([]byte(`{"seq":0,"at":"0000-01-01T00:00:00Z","prev":"","hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}`), uint32(3), byte(4))
	f.Fuzz(func(t *testing.T, export []byte, flipAt uint32, flipXor byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "trail.jsonl")
		trail, verified := auditFile(t, path, export)
		if !verified {
			return
		}

		var out bytes.Buffer
		if err := runAudit(context.Background(), auditOptions{asJSON: true, file: path}, nil, &out); err != nil {
			t.Fatalf("--json export of a verified trail: %v", err)
		}
		again, verifiedAgain := auditFile(t, filepath.Join(dir, "again.jsonl"), out.Bytes())
		if !verifiedAgain {
			t.Fatalf("a verified trail does not verify after --json export:\n%s", out.Bytes())
		}
		if !sameEntries(trail, again) {
			t.Fatalf("--json export changed the trail:\n%s\nfrom\n%s", out.Bytes(), export)
		}

		if len(export) == 0 {
			return
		}
		if flipXor == 0 {
			flipXor = 1
		}
		changed := bytes.Clone(export)
		changed[int(flipAt)%len(changed)] ^= flipXor
		tampered, err := readTrailBytes(t, filepath.Join(dir, "tampered.jsonl"), changed)
		if err != nil || sameEntries(trail, tampered) {
			return // unreadable, or the same entries spelled differently
		}
		if contract.VerifyAudit(tampered) == nil {
			t.Fatalf("a changed export still verifies:\n%s\nwas\n%s", changed, export)
		}
	})
}

// auditFile writes data to path, runs `cycle audit --file` on it and
// checks that its verdict agrees with readTrail and VerifyAudit.
func auditFile(t *testing.T, path string, data []byte) ([]contract.AuditEntry, bool) {
	t.Helper()
	trail, readErr := readTrailBytes(t, path, data)
	var out bytes.Buffer
	runErr := runAudit(context.Background(), auditOptions{file: path}, nil, &out)
	switch {
	case readErr != nil:
		if runErr == nil {
			t.Fatalf("an unreadable trail (%v) was accepted:\n%s", readErr, out.Bytes())
		}
		return nil, false
	case contract.VerifyAudit(trail) != nil:
		if !errors.Is(runErr, errAuditBroken) {
			t.Fatalf("a broken trail was not reported as broken: %v\n%s", runErr, out.Bytes())
		}
		return trail, false
	case runErr != nil && !errors.Is(runErr, infraaudit.ErrSignature):
		// Fuzzed trails carry no Transit signature; that refusal is tested
		// in infraaudit and e2e.
		t.Fatalf("a verified trail was refused: %v\n%s", runErr, out.Bytes())
	}
	return trail, true
}

func readTrailBytes(t *testing.T, path string, data []byte) ([]contract.AuditEntry, error) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return readTrail(path)
}

// sameEntries reports whether two trails say the same thing, entry by
// entry, in their canonical JSON.
func sameEntries(a, b []contract.AuditEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		ja, errA := json.Marshal(a[i])
		jb, errB := json.Marshal(b[i])
		if errA != nil || errB != nil || !bytes.Equal(ja, jb) {
			return false
		}
	}
	return true
}

// seedExport chains entries the way the workflow does (each hash covers
// the entry without its hash, as JSON) and exports them as JSON lines. It
// fails if the result does not verify, so it cannot drift from VerifyAudit.
func seedExport(f *testing.F, entries ...contract.AuditEntry) []byte {
	var buf bytes.Buffer
	prev := ""
	for i, e := range entries {
		e.Seq, e.Prev, e.Hash = i, prev, ""
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		sum := sha256.Sum256(b)
		e.Hash = hex.EncodeToString(sum[:])
		entries[i], prev = e, e.Hash
		if err := json.NewEncoder(&buf).Encode(e); err != nil {
			f.Fatal(err)
		}
	}
	if b := contract.VerifyAudit(entries); b != nil {
		f.Fatalf("seed trail does not verify: %v", b)
	}
	return buf.Bytes()
}
