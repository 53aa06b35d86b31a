package policy

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

// Max returns the higher of two risks.
func (r Risk) Max(o Risk) Risk {
	if o.Rank() > r.Rank() {
		return o
	}
	return r
}
