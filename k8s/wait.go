package k8s

import (
	"context"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
)

// MaxMessageBytes caps Outcome.Message, the size of a Kubernetes termination message.
const MaxMessageBytes = 4096

// Outcome is how a finished Job ended.
type Outcome struct {
	Succeeded bool
	// Reason is "Completed" on success, else the Job's Failed condition
	// reason: BackoffLimitExceeded (the Pod failed), DeadlineExceeded, ...
	Reason   string
	ExitCode int32
	// Message is the action's result, at most MaxMessageBytes: the
	// container's termination message, or, when it wrote none and succeeded,
	// the start of its log (what a real container prints; simulated Pods have
	// no log). On failure without either, the Job's condition message (e.g.
	// "Job was active longer than specified deadline").
	Message string
	// FromLogs says Message was read from the container's log.
	FromLogs              bool
	PodName               string
	StartedAt, FinishedAt time.Time
}

// Wait blocks until the Job is Complete or Failed, or ctx is done. It calls
// progress with a short status at least every poll interval so the caller can
// heartbeat. It watches the Job and re-reads it whenever the watch ends, errs
// or has run for the resync interval, so an apiserver restart only delays it;
// apiserver errors are retried until ctx is done. A Job deleted before it
// finished gives ErrJobDeleted.
func (r *Runner) Wait(ctx context.Context, namespace, jobName string, progress func(string)) (Outcome, error) {
	if progress == nil {
		progress = func(string) {}
	}
	jobs := r.cs.BatchV1().Jobs(namespace)
	tick := time.NewTicker(r.pollInterval)
	defer tick.Stop()
	// pause waits for the next tick, reporting status meanwhile.
	pause := func(status string) error {
		progress(status)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			return nil
		}
	}
	for {
		job, err := jobs.Get(ctx, jobName, metav1.GetOptions{})
		if k8serrors.IsNotFound(err) {
			return Outcome{}, fmt.Errorf("wait for job %s/%s: %w", namespace, jobName, ErrJobDeleted)
		}
		if err != nil {
			if ctx.Err() != nil {
				return Outcome{}, fmt.Errorf("wait for job %s/%s: %w", namespace, jobName, ctx.Err())
			}
			if err := pause("apiserver unavailable, retrying"); err != nil {
				return Outcome{}, fmt.Errorf("wait for job %s/%s: %w", namespace, jobName, err)
			}
			continue
		}
		if finished(job) {
			return r.outcome(ctx, job), nil
		}
		progress(jobStatus(job))

		began := time.Now()
		w, err := jobs.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", jobName).String(),
			ResourceVersion: job.ResourceVersion,
			TimeoutSeconds:  ptr.To(ceilSeconds(r.resyncInterval)),
		})
		if err != nil {
			if err := pause(jobStatus(job)); err != nil {
				return Outcome{}, fmt.Errorf("wait for job %s/%s: %w", namespace, jobName, err)
			}
			continue
		}
		done, err := r.watchUntilFinished(ctx, w, jobName, job, tick.C, progress)
		w.Stop()
		if err != nil {
			return Outcome{}, fmt.Errorf("wait for job %s/%s: %w", namespace, jobName, err)
		}
		if done != nil {
			return r.outcome(ctx, done), nil
		}
		// The watch ended: re-read the Job. A watch that ended at once (the
		// apiserver is going away, or our resource version is too old) waits
		// for a tick first so we do not spin.
		if time.Since(began) < time.Second {
			if err := pause(jobStatus(job)); err != nil {
				return Outcome{}, fmt.Errorf("wait for job %s/%s: %w", namespace, jobName, err)
			}
		}
	}
}

// watchUntilFinished consumes w until the Job finishes (returning it), the
// watch ends or the resync interval passes (returning nil, nil), or ctx is done.
func (r *Runner) watchUntilFinished(ctx context.Context, w watch.Interface, jobName string, last *batchv1.Job, tick <-chan time.Time, progress func(string)) (*batchv1.Job, error) {
	resync := time.NewTimer(r.resyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick:
			progress(jobStatus(last))
		case <-resync.C:
			return nil, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				job, ok := ev.Object.(*batchv1.Job)
				if !ok || job.Name != jobName {
					continue
				}
				if finished(job) {
					return job, nil
				}
				if s := jobStatus(job); s != jobStatus(last) {
					progress(s)
				}
				last = job
			case watch.Deleted:
				// Re-read: the Get reports ErrJobDeleted.
				if job, ok := ev.Object.(*batchv1.Job); ok && job.Name == jobName {
					return nil, nil
				}
			case watch.Error:
				return nil, nil
			}
		}
	}
}

// finished reports a terminal condition. SuccessCriteriaMet and FailureTarget
// come earlier, while Pods may still be terminating; Wait waits for the end.
func finished(job *batchv1.Job) bool {
	_, ok := terminalCondition(job)
	return ok
}

func terminalCondition(job *batchv1.Job) (batchv1.JobCondition, bool) {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return batchv1.JobCondition{}, false
}

func jobStatus(job *batchv1.Job) string {
	switch {
	case job.DeletionTimestamp != nil:
		return "deleting"
	case ptr.Deref(job.Spec.Suspend, false):
		return "suspended"
	case ptr.Deref(job.Status.Ready, 0) > 0:
		return "running"
	case job.Status.Active > 0:
		return "pending"
	default:
		return "starting"
	}
}

// outcome reads the result from the Job and, when it is still there, its
// Pod. A Pod that is already gone (deleted on DeadlineExceeded) leaves the
// Job's times and reason.
func (r *Runner) outcome(ctx context.Context, job *batchv1.Job) Outcome {
	cond, _ := terminalCondition(job)
	o := Outcome{Succeeded: cond.Type == batchv1.JobComplete, Reason: cond.Reason}
	if o.Succeeded {
		o.Reason = "Completed"
	} else {
		// Says why when the container has nothing to say (e.g. deadline).
		o.Message = cond.Message
	}
	if job.Status.StartTime != nil {
		o.StartedAt = job.Status.StartTime.Time
	}
	o.FinishedAt = cond.LastTransitionTime.Time
	if job.Status.CompletionTime != nil {
		o.FinishedAt = job.Status.CompletionTime.Time
	}
	if pod := r.latestPod(ctx, job); pod != nil {
		o.PodName = pod.Name
		for _, cs := range pod.Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != ContainerName || t == nil {
				continue
			}
			o.ExitCode = t.ExitCode
			if t.Message != "" || o.Succeeded {
				o.Message = t.Message
			}
			if t.Message == "" && o.Succeeded {
				// Most programs print their result rather than write
				// /dev/termination-log, and FallbackToLogsOnError only
				// falls back on failure.
				lctx, cancel := context.WithTimeout(ctx, logsTimeout)
				logs, err := r.podLogs(lctx, pod, MaxMessageBytes)
				cancel()
				if err == nil && logs != "" {
					o.Message, o.FromLogs = logs, true
				}
			}
			if !t.StartedAt.IsZero() {
				o.StartedAt = t.StartedAt.Time
			}
			if !t.FinishedAt.IsZero() {
				o.FinishedAt = t.FinishedAt.Time
			}
		}
	}
	if !o.Succeeded && o.ExitCode == 0 && o.Reason == batchv1.JobReasonBackoffLimitExceeded {
		// The Pod failed but is gone, or reported no exit code: never let a
		// failure look like exit 0.
		o.ExitCode = 1
	}
	o.Message = truncateUTF8(o.Message, MaxMessageBytes)
	return o
}

// latestPod returns the newest Pod of this very Job (by uid), or nil. Errors
// are swallowed: the Job's own status is the outcome, the Pod only adds detail.
func (r *Runner) latestPod(ctx context.Context, job *batchv1.Job) *corev1.Pod {
	list, err := r.cs.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: jobPodSelector(job.Name)})
	if err != nil {
		return nil
	}
	var latest *corev1.Pod
	for i := range list.Items {
		p := &list.Items[i]
		if !ownedBy(p.OwnerReferences, job) {
			continue
		}
		if latest == nil || latest.CreationTimestamp.Before(&p.CreationTimestamp) {
			latest = p
		}
	}
	return latest
}

// Logs returns up to limitBytes of the action container's log from the Job's
// newest Pod. Real clusters only: simulated (kwok) Pods have no logs; the
// termination message in Outcome is the result channel everywhere.
func (r *Runner) Logs(ctx context.Context, namespace, jobName string, limitBytes int64) (string, error) {
	job, err := r.cs.BatchV1().Jobs(namespace).Get(ctx, jobName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get job %s/%s: %w", namespace, jobName, err)
	}
	pod := r.latestPod(ctx, job)
	if pod == nil {
		return "", fmt.Errorf("logs of job %s/%s: no pod", namespace, jobName)
	}
	return r.podLogs(ctx, pod, limitBytes)
}

// logsTimeout bounds reading a finished container's log for its result: a
// node that cannot serve logs (a simulated one) must not hold the outcome up.
const logsTimeout = 3 * time.Second

func (r *Runner) podLogs(ctx context.Context, pod *corev1.Pod, limitBytes int64) (string, error) {
	namespace := pod.Namespace
	opts := &corev1.PodLogOptions{Container: ContainerName}
	if limitBytes > 0 {
		opts.LimitBytes = ptr.To(limitBytes)
	}
	rc, err := r.cs.CoreV1().Pods(namespace).GetLogs(pod.Name, opts).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of pod %s/%s: %w", namespace, pod.Name, err)
	}
	defer rc.Close()
	var rd io.Reader = rc
	if limitBytes > 0 {
		rd = io.LimitReader(rc, limitBytes)
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return "", fmt.Errorf("read logs of pod %s/%s: %w", namespace, pod.Name, err)
	}
	return string(b), nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for i := 0; i < utf8.UTFMax && len(s) > 0; i++ {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}
