package k8s

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
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
// nothing, whether it would admit the action's Job and the Pod the Job would
// create. The Pod is checked too because Pod Security and quota are
// enforced on Pods, not on Jobs. A refusal is a result, not an error; errors
// are for an apiserver that could not answer.
func (r *Runner) DryRun(ctx context.Context, s Spec) (DryRunResult, error) {
	job, err := JobFor(s)
	if err != nil {
		return DryRunResult{Reason: err.Error()}, nil
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	// A generated name keeps the dry run apart from any real Job of that name.
	job.GenerateName, job.Name = job.Name+"-", ""
	if _, err := r.cs.BatchV1().Jobs(s.Namespace).Create(ctx, job, dry); err != nil {
		return refusal("job", err)
	}
	tmpl := job.Spec.Template
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: job.GenerateName,
			Namespace:    s.Namespace,
			Labels:       tmpl.Labels,
			Annotations:  tmpl.Annotations,
		},
		Spec: tmpl.Spec,
	}
	if _, err := r.cs.CoreV1().Pods(s.Namespace).Create(ctx, pod, dry); err != nil {
		return refusal("pod", err)
	}
	return DryRunResult{Admitted: true}, nil
}

func refusal(kind string, err error) (DryRunResult, error) {
	switch {
	case k8serrors.IsForbidden(err), k8serrors.IsInvalid(err), k8serrors.IsBadRequest(err):
		return DryRunResult{Reason: fmt.Sprintf("%s refused: %v", kind, err)}, nil
	default:
		return DryRunResult{}, fmt.Errorf("dry-run %s: %w", kind, err)
	}
}
