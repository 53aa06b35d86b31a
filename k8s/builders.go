package k8s

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

// Defaults applied by JobFor when a Spec leaves a field empty.
const (
	DefaultCPU              = "100m"
	DefaultMemory           = "64Mi"
	DefaultTTLAfterFinished = time.Hour
	DefaultServiceAccount   = "airlock-action"

	// nonRootID is the uid/gid of distroless "nonroot"; any non-zero id works
	// for Pod Security, this one matches the images most actions are built on.
	nonRootID = int64(65532)
	// tmpSizeLimit bounds the writable /tmp, the only writable path in the Pod.
	tmpSizeLimit = "256Mi"
)

// CredentialsDir is where an action's container finds its credentials as
// files, one per Secret key (CredentialFile), read-only. Unlike the env vars
// (set once, when the container starts), the kubelet refreshes these files
// when Airlock rotates the credentials of a long Job: a long-running action
// must re-read its token from CredentialsDir/vault-token, not from
// $VAULT_TOKEN.
const CredentialsDir = "/var/run/airlock"

// credentialsVolume names the volume of the Job's Secret.
const credentialsVolume = "credentials"

// CredentialFile is the file name of a Secret key under CredentialsDir:
// lower case, "-" for "_" (VAULT_TOKEN is vault-token).
func CredentialFile(key string) string {
	return strings.ReplaceAll(strings.ToLower(key), "_", "-")
}

// ClusterDNS is a special EgressRule.CIDR: it allows DNS (UDP and TCP port 53)
// to the cluster DNS Pods (k8s-app=kube-dns in kube-system). DNS is not
// allowed unless an action asks for it, because it is an exfiltration channel
// and most actions reach their targets by address.
const ClusterDNS = "cluster-dns"

// ErrImageNotPinned is returned by JobFor for an image that is not pinned by
// digest: a tag can be moved to different code after the action was approved.
var ErrImageNotPinned = errors.New("image is not pinned by digest (want name@sha256:<64 hex>)")

// Spec is everything needed to run one action; built by the caller from the policy catalog.
type Spec struct {
	Namespace, AgentID, WorkflowID string
	ActionIndex                    int
	ActionType                     string
	// Image must be pinned by digest: name@sha256:<64 hex>.
	Image   string
	Command []string
	// Env is plain, non-secret environment.
	Env map[string]string
	// SecretEnv names env vars taken from the action's Secret (SecretName of
	// the Job), under the same key names, e.g. VAULT_TOKEN. The same keys are
	// mounted as files under CredentialsDir (CredentialFile).
	SecretEnv []string
	Egress    []EgressRule
	// CPU and Memory are both requests and limits. Default: "100m", "64Mi".
	CPU, Memory string
	// Deadline becomes activeDeadlineSeconds (rounded up); required.
	Deadline time.Duration
	// TTLAfterFinished keeps the finished Job for inspection. Default: 1h.
	TTLAfterFinished time.Duration
	// PodAnnotations are extra Pod template annotations (traceparent,
	// simulator hints). AnnotationTraceparent also becomes env TRACEPARENT.
	PodAnnotations map[string]string
	// ServiceAccount runs the Pod, without a token. Default: "airlock-action".
	ServiceAccount string
}

// EgressRule allows traffic to one CIDR on one port. CIDR may also be ClusterDNS.
type EgressRule struct {
	CIDR     string
	Port     int32
	Protocol string // TCP (default), UDP or SCTP
}

// digestRef is name[:tag]@sha256:<64 lowercase hex>.
var digestRef = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]*@sha256:[0-9a-f]{64}$`)

// JobFor builds the suspended, hardened Job for one action. It returns an
// error for a Spec that cannot run safely (unpinned image, no deadline, bad
// egress rule, env names that collide) rather than filling in something unsafe.
func JobFor(s Spec) (*batchv1.Job, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("job spec: %w", err)
	}
	cpu, err := quantity(s.CPU, DefaultCPU)
	if err != nil {
		return nil, fmt.Errorf("job spec: cpu: %w", err)
	}
	mem, err := quantity(s.Memory, DefaultMemory)
	if err != nil {
		return nil, fmt.Errorf("job spec: memory: %w", err)
	}
	env, err := s.env()
	if err != nil {
		return nil, fmt.Errorf("job spec: %w", err)
	}
	volumes, mounts, err := s.volumes()
	if err != nil {
		return nil, fmt.Errorf("job spec: %w", err)
	}
	ttl := s.TTLAfterFinished
	if ttl <= 0 {
		ttl = DefaultTTLAfterFinished
	}
	sa := s.ServiceAccount
	if sa == "" {
		sa = DefaultServiceAccount
	}

	name := JobName(s.WorkflowID, s.ActionIndex)
	labels := objectLabels(s)
	annotations := map[string]string{
		AnnotationWorkflowID: s.WorkflowID,
		AnnotationAgentID:    s.AgentID,
		AnnotationActionType: s.ActionType,
	}
	podAnnotations := maps.Clone(s.PodAnnotations)
	if podAnnotations == nil {
		podAnnotations = map[string]string{}
	}
	// Ours win over caller-supplied ones with the same key.
	maps.Copy(podAnnotations, annotations)
	resources := corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem}

	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   s.Namespace,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: batchv1.JobSpec{
			// Created suspended: the Pod may only exist once the Secret and
			// NetworkPolicy owned by this Job do (Runner.Start).
			Suspend:                 ptr.To(true),
			Parallelism:             ptr.To(int32(1)),
			Completions:             ptr.To(int32(1)),
			BackoffLimit:            ptr.To(int32(0)), // an action with side effects never runs twice
			ActiveDeadlineSeconds:   ptr.To(ceilSeconds(s.Deadline)),
			TTLSecondsAfterFinished: ptr.To(int32(min(ceilSeconds(ttl), math.MaxInt32))),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      maps.Clone(labels),
					Annotations: podAnnotations,
				},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					ServiceAccountName:           sa,
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(nonRootID),
						RunAsGroup:     ptr.To(nonRootID),
						FSGroup:        ptr.To(nonRootID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:                     ContainerName,
						Image:                    s.Image,
						ImagePullPolicy:          corev1.PullIfNotPresent,
						Command:                  slices.Clone(s.Command),
						Env:                      env,
						Resources:                corev1.ResourceRequirements{Requests: resources, Limits: resources.DeepCopy()},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             ptr.To(true),
							AllowPrivilegeEscalation: ptr.To(false),
							Privileged:               ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: mounts,
					}},
					Volumes: volumes,
				},
			},
		},
	}, nil
}

// volumes are the Pod's volumes and the container's mounts: a writable /tmp
// and, when the Pod reads the Job's Secret, that Secret's keys as read-only
// files under CredentialsDir. Two keys with the same file name are an error.
func (s Spec) volumes() ([]corev1.Volume, []corev1.VolumeMount, error) {
	volumes := []corev1.Volume{{
		Name: "tmp",
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			SizeLimit: ptr.To(resource.MustParse(tmpSizeLimit)),
		}},
	}}
	mounts := []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
	if len(s.SecretEnv) == 0 {
		return volumes, mounts, nil
	}
	files := map[string]string{}
	var items []corev1.KeyToPath
	for _, key := range s.SecretEnv {
		f := CredentialFile(key)
		if other, ok := files[f]; ok {
			return nil, nil, fmt.Errorf("secret env %s and %s share the credential file %s", other, key, f)
		}
		files[f] = key
		items = append(items, corev1.KeyToPath{Key: key, Path: f})
	}
	volumes = append(volumes, corev1.Volume{
		Name: credentialsVolume,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: SecretName(JobName(s.WorkflowID, s.ActionIndex)),
			Items:      items,
			// Owner-only; the kubelet adds group read for the Pod's fsGroup
			// (the non-root uid's group), so only the action reads them.
			DefaultMode: ptr.To(int32(0o400)),
			Optional:    ptr.To(false),
		}},
	})
	mounts = append(mounts, corev1.VolumeMount{Name: credentialsVolume, MountPath: CredentialsDir, ReadOnly: true})
	return volumes, mounts, nil
}

// SecretFor builds the Secret holding a Job's credentials. It is owned by the
// Job, so it goes when the Job goes. It is mutable: only the worker may
// write it (least-privilege RBAC), and it does so to rotate the credentials
// of a Job that outlives them (Runner.UpdateSecret); the kubelet then
// refreshes the files under CredentialsDir.
func SecretFor(job *batchv1.Job, data map[string][]byte, annotations map[string]string) *corev1.Secret {
	ann := maps.Clone(annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, trackingAnnotations(job))
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:            SecretName(job.Name),
			Namespace:       job.Namespace,
			Labels:          trackingLabels(job),
			Annotations:     ann,
			OwnerReferences: []metav1.OwnerReference{ownerRef(job)},
		},
		Type: corev1.SecretTypeOpaque,
		Data: maps.Clone(data),
	}
}

// NetworkPolicyFor builds the NetworkPolicy for exactly this Job's Pods: no
// ingress, egress only to the allow-list. Rules are used as given; Runner
// validates them (validateEgress) before creating the policy.
func NetworkPolicyFor(job *batchv1.Job, egress []EgressRule) *networkingv1.NetworkPolicy {
	// job-name and controller-uid are set on the Pods by the apiserver, so a
	// Pod cannot claim them without being this Job's Pod.
	selector := map[string]string{batchv1.JobNameLabel: job.Name}
	if job.UID != "" {
		selector[batchv1.ControllerUidLabel] = string(job.UID)
	}
	rules := []networkingv1.NetworkPolicyEgressRule{}
	for _, e := range egress {
		rules = append(rules, egressRule(e))
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{
			Name:            NetworkPolicyName(job.Name),
			Namespace:       job.Namespace,
			Labels:          trackingLabels(job),
			Annotations:     trackingAnnotations(job),
			OwnerReferences: []metav1.OwnerReference{ownerRef(job)},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{},
			Egress:      rules,
		},
	}
}

func egressRule(e EgressRule) networkingv1.NetworkPolicyEgressRule {
	if e.CIDR == ClusterDNS {
		return networkingv1.NetworkPolicyEgressRule{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{
				{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))},
				{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(53))},
			},
		}
	}
	return networkingv1.NetworkPolicyEgressRule{
		To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: e.CIDR}}},
		Ports: []networkingv1.NetworkPolicyPort{{
			Protocol: ptr.To(protocol(e.Protocol)),
			Port:     ptr.To(intstr.FromInt32(e.Port)),
		}},
	}
}

func protocol(p string) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return corev1.Protocol(strings.ToUpper(p))
}

// validateEgress refuses rules that would silently allow more, or other,
// traffic than the catalog meant: bad or non-canonical CIDRs, missing ports.
func validateEgress(rules []EgressRule) error {
	for i, e := range rules {
		if e.CIDR == ClusterDNS {
			if (e.Port != 0 && e.Port != 53) || e.Protocol != "" {
				return fmt.Errorf("egress rule %d: %s takes no protocol and port 53 or none", i, ClusterDNS)
			}
			continue
		}
		p, err := netip.ParsePrefix(e.CIDR)
		if err != nil {
			return fmt.Errorf("egress rule %d: cidr %q: %w", i, e.CIDR, err)
		}
		if p.Masked() != p {
			return fmt.Errorf("egress rule %d: cidr %q has host bits set (network is %s)", i, e.CIDR, p.Masked())
		}
		if e.Port < 1 || e.Port > 65535 {
			return fmt.Errorf("egress rule %d (%s): port %d out of range 1-65535", i, e.CIDR, e.Port)
		}
		switch protocol(e.Protocol) {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			return fmt.Errorf("egress rule %d (%s): unknown protocol %q", i, e.CIDR, e.Protocol)
		}
	}
	return nil
}

func (s Spec) validate() error {
	var errs []error
	if s.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	} else if msgs := validation.IsDNS1123Label(s.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", s.Namespace, strings.Join(msgs, "; ")))
	}
	if s.AgentID == "" {
		errs = append(errs, errors.New("agent id is required"))
	}
	if s.WorkflowID == "" {
		errs = append(errs, errors.New("workflow id is required"))
	}
	if s.ActionIndex < 0 {
		errs = append(errs, fmt.Errorf("action index %d is negative", s.ActionIndex))
	}
	if !digestRef.MatchString(s.Image) {
		errs = append(errs, fmt.Errorf("%w: %q", ErrImageNotPinned, s.Image))
	}
	if s.Deadline <= 0 {
		errs = append(errs, errors.New("deadline is required: an action without one could run forever"))
	}
	if err := validateEgress(s.Egress); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// env lists plain env sorted by name (a stable Job for a stable Spec), then
// TRACEPARENT, then the secret env. A name given twice is an error: which
// value wins would otherwise depend on the order.
func (s Spec) env() ([]corev1.EnvVar, error) {
	seen := map[string]bool{}
	add := func(name string) error {
		if name == "" || strings.Contains(name, "=") {
			return fmt.Errorf("invalid env name %q", name)
		}
		if seen[name] {
			return fmt.Errorf("env %s is set twice", name)
		}
		seen[name] = true
		return nil
	}
	var env []corev1.EnvVar
	for _, name := range slices.Sorted(maps.Keys(s.Env)) {
		if err := add(name); err != nil {
			return nil, err
		}
		env = append(env, corev1.EnvVar{Name: name, Value: s.Env[name]})
	}
	if tp, ok := s.PodAnnotations[AnnotationTraceparent]; ok {
		if err := add("TRACEPARENT"); err != nil {
			return nil, err
		}
		env = append(env, corev1.EnvVar{Name: "TRACEPARENT", Value: tp})
	}
	secret := SecretName(JobName(s.WorkflowID, s.ActionIndex))
	for _, name := range s.SecretEnv {
		if err := add(name); err != nil {
			return nil, err
		}
		// The key doubles as the env name, so it must also be a Secret key.
		if msgs := validation.IsConfigMapKey(name); len(msgs) > 0 {
			return nil, fmt.Errorf("secret env %q: %s", name, strings.Join(msgs, "; "))
		}
		env = append(env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: secret},
				Key:                  name,
				Optional:             ptr.To(false),
			},
		}})
	}
	return env, nil
}

func objectLabels(s Spec) map[string]string {
	return map[string]string{
		LabelManagedBy:   ManagedBy,
		LabelAgent:       labelValue(s.AgentID),
		LabelWorkflow:    WorkflowLabel(s.WorkflowID),
		LabelActionIndex: strconv.Itoa(s.ActionIndex),
		LabelActionType:  labelValue(s.ActionType),
	}
}

// trackingLabels are the Job's own labels, copied to the objects it owns.
func trackingLabels(job *batchv1.Job) map[string]string {
	out := map[string]string{}
	for _, k := range []string{LabelManagedBy, LabelAgent, LabelWorkflow, LabelActionIndex, LabelActionType} {
		if v, ok := job.Labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

func trackingAnnotations(job *batchv1.Job) map[string]string {
	out := map[string]string{}
	for _, k := range []string{AnnotationWorkflowID, AnnotationAgentID, AnnotationActionType} {
		if v, ok := job.Annotations[k]; ok {
			out[k] = v
		}
	}
	return out
}

func ownerRef(job *batchv1.Job) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         batchv1.SchemeGroupVersion.String(),
		Kind:               "Job",
		Name:               job.Name,
		UID:                job.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

func quantity(v, def string) (resource.Quantity, error) {
	if v == "" {
		v = def
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return resource.Quantity{}, fmt.Errorf("%q: %w", v, err)
	}
	if q.Sign() <= 0 {
		return resource.Quantity{}, fmt.Errorf("%q must be positive", v)
	}
	return q, nil
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
