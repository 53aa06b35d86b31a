package worker

import (
	"fmt"

	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
)

// CatalogWarnings lists what in a valid catalog is likely to surprise: an
// agent whose running_jobs budget exceeds its namespace's Pod quota. Its
// budget never refuses a burst by name; the quota holds the extra Jobs back
// instead, the Job controller retries them with a growing backoff, and one
// can reach its deadline without ever running (DeadlineExceeded).
func CatalogWarnings(cat *policy.Catalog) []string {
	var out []string
	for _, ag := range cat.Agents {
		pods := ag.Quota.Pods
		if pods == 0 {
			pods = k8s.DefaultQuotaPods
		}
		if jobs := ag.Budgets.WithDefaults().RunningJobs; jobs > pods {
			out = append(out, fmt.Sprintf("agent %s: budgets.running_jobs (%d) exceeds quota.pods (%d): a burst beyond %d Jobs waits for Pods, and a Job can reach its deadline without running; set running_jobs at or below quota.pods",
				ag.ID, jobs, pods, pods))
		}
	}
	return out
}
