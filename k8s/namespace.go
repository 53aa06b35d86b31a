package k8s

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// Names of the objects EnsureNamespace manages.
const (
	ResourceQuotaName     = "airlock-quota"
	LimitRangeName        = "airlock-limits"
	DefaultDenyPolicyName = "airlock-default-deny"
)

// Quota bounds what an agent's namespace may use at once. Zero fields take
// the defaults: 10 Pods, 2 CPU, 2Gi memory (both requests and limits).
type Quota struct {
	Pods        int
	CPU, Memory string
}

const (
	DefaultQuotaPods   = 10
	DefaultQuotaCPU    = "2"
	DefaultQuotaMemory = "2Gi"
)

// reservedNamespaces are never turned into agent namespaces: restricted Pod
// Security and a default-deny policy there would break the cluster.
var reservedNamespaces = map[string]bool{
	"default": true, "kube-system": true, "kube-public": true, "kube-node-lease": true,
}

// EnsureNamespace bootstraps an agent namespace so nothing in it can run
// outside the sandbox even if a Job were built wrong: Pod Security
// "restricted" enforced (and audited, warned), a ResourceQuota, a LimitRange
// giving containers default requests/limits, a default-deny NetworkPolicy for
// all ingress and egress, and the token-less ServiceAccount action Pods run
// as. It is idempotent and repairs drift (labels, quota, limits, policy). A
// namespace already labelled for another agent is an error.
func (r *Runner) EnsureNamespace(ctx context.Context, namespace, agentID string, q Quota) error {
	if reservedNamespaces[namespace] {
		return fmt.Errorf("ensure namespace %s: reserved namespace", namespace)
	}
	if agentID == "" {
		return fmt.Errorf("ensure namespace %s: agent id is required", namespace)
	}
	quota, err := quotaFor(namespace, q)
	if err != nil {
		return fmt.Errorf("ensure namespace %s: %w", namespace, err)
	}
	if err := r.ensureNamespaceObject(ctx, namespace, agentID); err != nil {
		return err
	}
	if err := r.ensureQuota(ctx, quota); err != nil {
		return err
	}
	if err := r.ensureLimitRange(ctx, limitRangeFor(namespace)); err != nil {
		return err
	}
	if err := r.ensureDefaultDeny(ctx, defaultDenyFor(namespace)); err != nil {
		return err
	}
	return r.ensureServiceAccount(ctx, serviceAccountFor(namespace))
}

// NamespaceLabels are the labels EnsureNamespace sets on an agent namespace.
func NamespaceLabels(agentID string) map[string]string {
	return map[string]string{
		LabelManagedBy:                       ManagedBy,
		LabelAgent:                           AgentLabel(agentID),
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/audit":           "restricted",
		"pod-security.kubernetes.io/audit-version":   "latest",
		"pod-security.kubernetes.io/warn":            "restricted",
		"pod-security.kubernetes.io/warn-version":    "latest",
	}
}

func (r *Runner) ensureNamespaceObject(ctx context.Context, namespace, agentID string) error {
	want := NamespaceLabels(agentID)
	namespaces := r.cs.CoreV1().Namespaces()
	_, err := namespaces.Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: want},
	}, metav1.CreateOptions{})
	if err == nil {
		return nil
	}
	if !k8serrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ns, err := namespaces.Get(ctx, namespace, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got, ok := ns.Labels[LabelAgent]; ok && got != want[LabelAgent] {
			return fmt.Errorf("namespace belongs to agent %q", got)
		}
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		before := maps.Clone(ns.Labels)
		maps.Copy(ns.Labels, want)
		if maps.Equal(before, ns.Labels) {
			return nil
		}
		_, err = namespaces.Update(ctx, ns, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("update namespace %s: %w", namespace, err)
	}
	return nil
}

func quotaFor(namespace string, q Quota) (*corev1.ResourceQuota, error) {
	if q.Pods < 0 {
		return nil, fmt.Errorf("quota: pods %d is negative", q.Pods)
	}
	if q.Pods == 0 {
		q.Pods = DefaultQuotaPods
	}
	cpu, err := quantity(q.CPU, DefaultQuotaCPU)
	if err != nil {
		return nil, fmt.Errorf("quota: cpu: %w", err)
	}
	mem, err := quantity(q.Memory, DefaultQuotaMemory)
	if err != nil {
		return nil, fmt.Errorf("quota: memory: %w", err)
	}
	return &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: ResourceQuotaName, Namespace: namespace, Labels: managedLabels()},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourcePods:           resource.MustParse(strconv.Itoa(q.Pods)),
			corev1.ResourceRequestsCPU:    cpu,
			corev1.ResourceLimitsCPU:      cpu,
			corev1.ResourceRequestsMemory: mem,
			corev1.ResourceLimitsMemory:   mem,
		}},
	}, nil
}

// limitRangeFor gives containers that state no resources the action
// defaults, so the quota (which requires them) never rejects a Pod for that.
func limitRangeFor(namespace string) *corev1.LimitRange {
	def := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(DefaultCPU),
		corev1.ResourceMemory: resource.MustParse(DefaultMemory),
	}
	return &corev1.LimitRange{
		ObjectMeta: metav1.ObjectMeta{Name: LimitRangeName, Namespace: namespace, Labels: managedLabels()},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:           corev1.LimitTypeContainer,
			Default:        def,
			DefaultRequest: def.DeepCopy(),
		}}},
	}
}

func defaultDenyFor(namespace string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultDenyPolicyName, Namespace: namespace, Labels: managedLabels()},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{}, // every Pod
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
}

func serviceAccountFor(namespace string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: DefaultServiceAccount, Namespace: namespace, Labels: managedLabels()},
		AutomountServiceAccountToken: ptr.To(false),
	}
}

func managedLabels() map[string]string { return map[string]string{LabelManagedBy: ManagedBy} }

func (r *Runner) ensureQuota(ctx context.Context, want *corev1.ResourceQuota) error {
	return ensureSpec(ctx, r.cs.CoreV1().ResourceQuotas(want.Namespace), want,
		func(q *corev1.ResourceQuota) *corev1.ResourceQuotaSpec { return &q.Spec }, "resource quota")
}

func (r *Runner) ensureLimitRange(ctx context.Context, want *corev1.LimitRange) error {
	return ensureSpec(ctx, r.cs.CoreV1().LimitRanges(want.Namespace), want,
		func(l *corev1.LimitRange) *corev1.LimitRangeSpec { return &l.Spec }, "limit range")
}

// ensureDefaultDeny also repairs a loosened policy: the deny-all spec is put back.
func (r *Runner) ensureDefaultDeny(ctx context.Context, want *networkingv1.NetworkPolicy) error {
	return ensureSpec(ctx, r.cs.NetworkingV1().NetworkPolicies(want.Namespace), want,
		func(n *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicySpec { return &n.Spec }, "network policy")
}

// specClient is the part of a typed client ensureSpec needs.
type specClient[T any] interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
	Get(context.Context, string, metav1.GetOptions) (T, error)
	Update(context.Context, T, metav1.UpdateOptions) (T, error)
}

// ensureSpec creates want, or, if it exists, puts want's spec back on it.
func ensureSpec[T metav1.Object, S any](ctx context.Context, c specClient[T], want T, spec func(T) *S, what string) error {
	ns, name := want.GetNamespace(), want.GetName()
	if _, err := c.Create(ctx, want, metav1.CreateOptions{}); err == nil || !k8serrors.IsAlreadyExists(err) {
		return wrapErr(err, "create %s %s/%s", what, ns, name)
	}
	return wrapErr(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got, err := c.Get(ctx, name, metav1.GetOptions{})
		if err != nil || equality.Semantic.DeepEqual(*spec(got), *spec(want)) {
			return err
		}
		*spec(got) = *spec(want)
		_, err = c.Update(ctx, got, metav1.UpdateOptions{})
		return err
	}), "update %s %s/%s", what, ns, name)
}

func (r *Runner) ensureServiceAccount(ctx context.Context, want *corev1.ServiceAccount) error {
	c := r.cs.CoreV1().ServiceAccounts(want.Namespace)
	if _, err := c.Create(ctx, want, metav1.CreateOptions{}); err == nil || !k8serrors.IsAlreadyExists(err) {
		return wrapErr(err, "create service account %s/%s", want.Namespace, want.Name)
	}
	return wrapErr(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got, err := c.Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil || !ptr.Deref(got.AutomountServiceAccountToken, true) {
			return err
		}
		got.AutomountServiceAccountToken = ptr.To(false)
		_, err = c.Update(ctx, got, metav1.UpdateOptions{})
		return err
	}), "update service account %s/%s", want.Namespace, want.Name)
}

// wrapErr adds context to a non-nil error.
func wrapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
