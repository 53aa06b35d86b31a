package k8s

import (
	"context"
	"fmt"

	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DryRunResult says whether the apiserver would admit an action.
type DryRunResult struct {
	Admitted bool
	// Reason is the apiserver's refusal, when not admitted.
	Reason string
}

// DryRun asks the apiserver, with a server-side dry run that persists
// nothing, whether it would admit the action's Job: schema validation and
// every admission plugin that sees Jobs. It deliberately does not dry-run a
// Pod: that needs `create` on pods, which the worker's RBAC never grants.
// A refusal is a result, not an error; errors are for an apiserver that
// could not answer.
func (r *Runner) DryRun(ctx context.Context, s Spec) (DryRunResult, error) {
	job, err := JobFor(s)
	if err != nil {
		return DryRunResult{Reason: err.Error()}, nil
	}
	// A generated name keeps the dry run apart from any real Job of that name.
	job.GenerateName, job.Name = job.Name+"-", ""
	if _, err := r.cs.BatchV1().Jobs(s.Namespace).Create(ctx, job, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		switch {
		case k8serrors.IsForbidden(err), k8serrors.IsInvalid(err), k8serrors.IsBadRequest(err):
			return DryRunResult{Reason: err.Error()}, nil
		default:
			return DryRunResult{}, fmt.Errorf("dry-run job: %w", err)
		}
	}
	return DryRunResult{Admitted: true}, nil
}
