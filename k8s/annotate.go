package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
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

// ErrSecretChanged is returned by PatchSecretAnnotations and UpdateSecret
// when the Secret is no longer the object the caller read: deleted,
// recreated or written by someone else since.
var ErrSecretChanged = errors.New("secret changed since it was read")

// PatchSecretAnnotations merges annotations into the Secret (a nil value
// removes the key) if it is still the object the caller read (uid and
// resourceVersion as preconditions). Rotation records the accessor of a new
// token on the Secret this way before the token may live longer than its
// fuse. It returns the Secret as written.
func (r *Runner) PatchSecretAnnotations(ctx context.Context, sec *corev1.Secret, annotations map[string]*string) (*corev1.Secret, error) {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": sec.UID, "resourceVersion": sec.ResourceVersion, "annotations": annotations},
	})
	if err != nil {
		return nil, fmt.Errorf("annotate secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	got, err := r.cs.CoreV1().Secrets(sec.Namespace).Patch(ctx, sec.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("annotate secret %s/%s: %w", sec.Namespace, sec.Name, secretWriteError(err))
	}
	return got, nil
}

// UpdateSecret replaces the Secret's data and merges annotations into its
// own, if it is still the object the caller read (resourceVersion). The
// kubelet then refreshes the files of the Secret's volume in running Pods
// (within its sync period); env vars taken from it keep their old values.
func (r *Runner) UpdateSecret(ctx context.Context, sec *corev1.Secret, data map[string][]byte, annotations map[string]string) (*corev1.Secret, error) {
	want := sec.DeepCopy()
	want.Data = maps.Clone(data)
	want.StringData = nil
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	maps.Copy(want.Annotations, annotations)
	got, err := r.cs.CoreV1().Secrets(sec.Namespace).Update(ctx, want, metav1.UpdateOptions{})
	if err != nil {
		// Never the object: it holds credentials.
		return nil, fmt.Errorf("update secret %s/%s: %w", sec.Namespace, sec.Name, secretWriteError(err))
	}
	return got, nil
}

func secretWriteError(err error) error {
	if k8serrors.IsConflict(err) || k8serrors.IsNotFound(err) {
		return fmt.Errorf("%w: %w", ErrSecretChanged, err)
	}
	return err
}
