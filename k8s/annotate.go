package k8s

import (
	"context"
	"encoding/json"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotate merges annotations into the Job's, with its uid as a
// precondition so a Job deleted and recreated since is never marked. Staging
// uses it to record what it leased for the Job before anything else can
// fail: the Job is the durable record a retry reads.
func (r *Runner) Annotate(ctx context.Context, job *batchv1.Job, annotations map[string]string) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": job.UID, "annotations": annotations},
	})
	if err != nil {
		return fmt.Errorf("annotate job %s/%s: %w", job.Namespace, job.Name, err)
	}
	got, err := r.cs.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("annotate job %s/%s: %w", job.Namespace, job.Name, err)
	}
	job.Annotations = got.Annotations
	return nil
}

// GetJob returns the Job, or (nil, nil) when it does not exist.
func (r *Runner) GetJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	job, err := r.cs.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
	if k8serrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s/%s: %w", namespace, name, err)
	}
	return job, nil
}

// DeleteSecret deletes the Job's Secret if it is still the object with uid
// (a stale Secret whose credentials are dead). Gone already is fine.
func (r *Runner) DeleteSecret(ctx context.Context, namespace, jobName string, uid types.UID) error {
	err := r.cs.CoreV1().Secrets(namespace).Delete(ctx, SecretName(jobName), metav1.DeleteOptions{
		Preconditions: metav1.NewUIDPreconditions(string(uid)),
	})
	if err != nil && !k8serrors.IsNotFound(err) {
		return fmt.Errorf("delete secret %s/%s: %w", namespace, SecretName(jobName), err)
	}
	return nil
}

// OwnedBy reports whether obj is owned by this very Job (by uid).
func OwnedBy(obj metav1.Object, job *batchv1.Job) bool {
	return ownedBy(obj.GetOwnerReferences(), job)
}
