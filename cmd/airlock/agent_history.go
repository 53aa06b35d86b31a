package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/airlockhq/airlock/contract"
)

// printVersions prints the agent's trusted version, its canary and the
// canary's evidence against its gate (`agent show`).
func printVersions(w io.Writer, s contract.AgentState) {
	v := s.Versions
	if v.Trusted == "" && v.Canary == nil {
		return
	}
	trusted := v.Trusted
	if trusted == "" {
		trusted = "none (unversioned requests get the agent's phases)"
	} else if !v.Since.IsZero() {
		trusted += " since " + v.Since.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "versions: trusted %s", trusted)
	if len(v.Retired) > 0 {
		fmt.Fprintf(w, " (retired: %s)", strings.Join(v.Retired, ", "))
	}
	fmt.Fprintln(w)
	ce := v.Canary
	if ce == nil {
		fmt.Fprintln(w, "  no canary")
		return
	}
	fmt.Fprintf(w, "  canary %s since %s: every write in shadow; %d cycles, %d pairs (%d same actions, %d different), %d unpaired, %d violations\n",
		ce.Version, ce.Since.UTC().Format(time.RFC3339), ce.Cycles, ce.Pairs, ce.Agreed, ce.Disagreed, ce.Unpaired, ce.Violations)
	if ce.LastDisagreement != "" {
		fmt.Fprintf(w, "    last disagreement: %s\n", ce.LastDisagreement)
	}
	g := contract.CheckCanaryGate(*ce, s.Trust.WithDefaults().Canary)
	fmt.Fprintf(w, "    gate to trusted %s: %s\n", metWord(g.Met), checkList(g))
	if p := v.Offer; p != nil {
		by := p.By
		if p.Status == contract.PromotionDeclined {
			by = p.DeclinedBy
		}
		fmt.Fprintf(w, "    promotion to trusted %s: %d/%d approvers (%s)\n", p.Status, len(p.By), p.Needed, strings.Join(by, ", "))
	}
}

func metWord(met bool) string {
	if met {
		return "met"
	}
	return "not met"
}

func checkList(g contract.Gate) string {
	var checks []string
	for _, c := range g.Checks {
		mark := "✗"
		if c.Met {
			mark = "✓"
		}
		checks = append(checks, mark+" "+c.Text)
	}
	return strings.Join(checks, "; ")
}

// printHistory prints the agent's transitions, oldest first, with who,
// why, and the evidence each promotion, demotion or decline was made on
// (`agent history`). The Agent workflow keeps the last
// contract.AgentTransitionsKept of them.
func printHistory(w io.Writer, s contract.AgentState) {
	fmt.Fprintf(w, "agent %s: %d transitions (the last %d are kept), oldest first\n", s.AgentID, len(s.Transitions), contract.AgentTransitionsKept)
	for _, t := range s.Transitions {
		subject := ""
		switch {
		case t.Version != "":
			subject = " version " + t.Version
		case t.Class != "":
			subject = " " + string(t.Class)
		}
		by := ""
		if len(t.By) > 0 {
			by = " by " + strings.Join(t.By, ", ")
		}
		trigger := ""
		if t.Trigger != "" {
			trigger = " [" + t.Trigger + "]"
		}
		fmt.Fprintf(w, "%s  %s%s%s%s: %s\n", t.At.UTC().Format(time.RFC3339), t.Kind, subject, trigger, by, t.Why)
		fmt.Fprintf(w, "    phases %s, status %s\n", phaseList(t.Phases), t.To)
		if ev := t.Evidence; ev != nil {
			fmt.Fprintf(w, "    evidence in %s since %s: %d shadow proposals (%d agree, %d disagree), %d approved, %d denied, %d runs (%d failed, %d stopped, %d rolled back), %d violations\n",
				ev.Phase, ev.Since.UTC().Format(time.RFC3339), ev.ShadowProposals, ev.Feedback.Agree, ev.Feedback.Disagree,
				ev.Approved, ev.Denied, ev.Runs, ev.Failed, ev.Vetoed, ev.Rollbacks, ev.Violations)
		}
		if ce := t.Canary; ce != nil {
			fmt.Fprintf(w, "    canary %s evidence: %d pairs (%d same actions, %d different), %d unpaired, %d violations\n",
				ce.Version, ce.Pairs, ce.Agreed, ce.Disagreed, ce.Unpaired, ce.Violations)
		}
	}
}
