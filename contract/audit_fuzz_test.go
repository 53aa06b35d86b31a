package contract_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/airlockhq/airlock/contract"
)

// FuzzVerifyAudit builds hash-chained trails from fuzzed entries the way a
// cycle records them, exports them as JSON lines and tampers with one byte.
// Invariants: nothing panics (arbitrary JSON trails included); a recorded
// trail verifies, and still verifies after the JSON round trip of an export;
// and a changed byte in an exported entry either fails to parse, changes
// nothing the entry says, or breaks verification at that very entry.
func FuzzVerifyAudit(f *testing.F) {
	f.Add(uint8(3), "cycle started", contract.AuditCycle, []byte(`{"agent":"sample","cycle":"c-1"}`), int64(1700000000), int64(123456789), int64(0), int32(0), uint32(0x1234), byte(1), []byte(`[]`))
	f.Add(uint8(1), "ünïcødé \u2028 <html> & \xff", contract.AuditThought, []byte(`{"confidence":0.30000000000000004,"step":1e21,"x":null}`), int64(0), int64(0), int64(-1), int32(3600), uint32(7), byte(0x20), []byte(`[{"seq":0,"hash":""}]`))
	f.Add(uint8(5), "", contract.AuditDecision, []byte(`{"approver":"U2","nested":{"a":[1,"2",{"b":false}]}}`), int64(253402300799), int64(999999999), int64(2), int32(-45296), uint32(0xffffffff), byte(0x80), []byte(`[{"seq":0,"prev":"","hash":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]`))
	f.Add(uint8(2), "x", contract.AuditResult, []byte(`null`), int64(-62135596800), int64(0), int64(0), int32(0), uint32(0x300), byte(2), []byte(`{"seq":"x"}`))
	f.Fuzz(func(t *testing.T, n uint8, summary, kind string, dataJSON []byte, atSec, atNsec, action int64, zone int32, flipAt uint32, flipXor byte, rawTrail []byte) {
		var arbitrary []contract.AuditEntry
		if json.Unmarshal(rawTrail, &arbitrary) == nil {
			_ = contract.VerifyAudit(arbitrary)
		}

		var data map[string]any
		_ = json.Unmarshal(dataJSON, &data)
		at := time.Unix(atSec, atNsec).In(time.FixedZone("fuzz", int(zone)))
		trail := make([]contract.AuditEntry, 0, 1+int(n%8))
		for i := range cap(trail) {
			var act *int
			if action >= 0 {
				a := int(action) + i
				act = &a
			}
			trail = contract.AppendAudit(trail, at.Add(time.Duration(i)*time.Second), kind, act, summary+strconv.Itoa(i), data)
		}
		if b := contract.VerifyAudit(trail); b != nil {
			// Only an entry JSON cannot encode may refuse to verify.
			if _, err := json.Marshal(trail[b.Seq]); err == nil {
				t.Fatalf("a recorded trail does not verify: %v", b)
			}
			return
		}

		lines := make([][]byte, len(trail))
		back := make([]contract.AuditEntry, len(trail))
		for i, e := range trail {
			line, err := json.Marshal(e)
			if err != nil {
				t.Fatalf("entry %d verifies but cannot be exported: %v", i, err)
			}
			lines[i] = line
			if err := json.Unmarshal(line, &back[i]); err != nil {
				t.Fatalf("entry %d does not read back from its export %s: %v", i, line, err)
			}
		}
		if b := contract.VerifyAudit(back); b != nil {
			t.Fatalf("a verified trail breaks after a JSON round trip: %v", b)
		}

		k := int(flipAt) % len(lines)
		line := bytes.Clone(lines[k])
		if flipXor == 0 {
			flipXor = 1
		}
		line[int(flipAt>>8)%len(line)] ^= flipXor
		var tampered contract.AuditEntry
		if json.Unmarshal(line, &tampered) != nil {
			return // the export no longer parses
		}
		if canon, _ := json.Marshal(tampered); bytes.Equal(canon, lines[k]) {
			return // same entry spelled differently (e.g. a key's letter case)
		}
		changed := append([]contract.AuditEntry(nil), back...)
		changed[k] = tampered
		b := contract.VerifyAudit(changed)
		if b == nil {
			t.Fatalf("entry %d changed from\n%s\nto\n%s\nand the trail still verifies", k, lines[k], line)
		}
		if b.Seq != k {
			t.Fatalf("entry %d changed, the trail breaks at %d", k, b.Seq)
		}
	})
}
