package policy

import "time"

// riskRank orders risks from low to critical.
var riskRank = map[Risk]int{RiskLow: 0, RiskMedium: 1, RiskHigh: 2, RiskCritical: 3}

// Rank orders risks: low 0, medium 1, high 2, critical 3; unknown -1.
// Queues of waiting decisions sort by it, critical first.
func (r Risk) Rank() int {
	if n, ok := riskRank[r]; ok {
		return n
	}
	return -1
}

// CompareUrgency orders what waits for humans: higher risk first, then
// older first (for slices.SortFunc).
func CompareUrgency(aRisk Risk, aSince time.Time, bRisk Risk, bSince time.Time) int {
	if d := bRisk.Rank() - aRisk.Rank(); d != 0 {
		return d
	}
	return aSince.Compare(bSince)
}

// Max returns the higher of two risks.
func (r Risk) Max(o Risk) Risk {
	if o.Rank() > r.Rank() {
		return o
	}
	return r
}
