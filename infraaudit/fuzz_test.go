package infraaudit_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/airlockhq/airlock/infraaudit"
)

// The parsers read files anyone with access to the log host may have
// written: no input may panic them, and nothing they return may name an
// accessor the cycle did not use.
func FuzzReadVault(f *testing.F) {
	for _, l := range strings.Split(vaultLog, "\n") {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"type":"response","time":"2026-05-01T12:00:00Z","request":{"data":{"accessor":7}},"response":{"auth":null}}`))
	f.Add([]byte("\x00\xff{\n\n}"))
	s := infraaudit.SubjectOf(wf, trail())
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, st, err := infraaudit.ReadVault(bytes.NewReader(b), s)
		if err != nil {
			return
		}
		if st.Matched+st.Malformed > st.Lines {
			t.Fatalf("stats %+v add up to more than the lines", st)
		}
		for _, e := range ev {
			if _, ok := s.Accessors[e.Accessor]; !ok {
				t.Fatalf("event about accessor %q the cycle never used", e.Accessor)
			}
		}
	})
}

func FuzzReadKube(f *testing.F) {
	for _, l := range strings.Split(kubeLog, "\n") {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"kind":"Event","stage":"ResponseComplete","objectRef":{},"stageTimestamp":"x"}`))
	s := infraaudit.SubjectOf(wf, trail())
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, st, err := infraaudit.ReadKube(bytes.NewReader(b), s)
		if err != nil {
			return
		}
		if st.Matched != len(ev) || st.Matched+st.Malformed > st.Lines {
			t.Fatalf("stats %+v for %d events", st, len(ev))
		}
		for _, e := range ev {
			if !strings.Contains(e.What, " "+ns+"/"+job) {
				t.Fatalf("event %q is not about the cycle's objects", e.What)
			}
		}
	})
}
