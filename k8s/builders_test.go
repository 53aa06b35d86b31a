package k8s

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
)

var (
	testDigest = "sha256:" + strings.Repeat("0123456789abcdef", 4)
	testImage  = "ghcr.io/airlockhq/actions/http@" + testDigest
	// quantities compare by value: "1000m" and "1" are the same CPU.
	cmpQuantity = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })
)

const testWorkflowID = "cycle/agent-a/0001"

func baseSpec() Spec {
	return Spec{
		Namespace:   "agent-a",
		AgentID:     "agent-a",
		WorkflowID:  testWorkflowID,
		ActionIndex: 2,
		ActionType:  "http.get",
		Image:       testImage,
		Command:     []string{"/action", "--url", "https://example.com"},
		Deadline:    90 * time.Second,
	}
}

// hardenedJob is the Job JobFor must build for baseSpec().
func hardenedJob() *batchv1.Job {
	name := JobName(testWorkflowID, 2)
	labels := map[string]string{
		LabelManagedBy:   "airlock",
		LabelAgent:       "agent-a",
		LabelWorkflow:    WorkflowLabel(testWorkflowID),
		LabelActionIndex: "2",
		LabelActionType:  "http.get",
	}
	annotations := map[string]string{
		AnnotationWorkflowID: testWorkflowID,
		AnnotationAgentID:    "agent-a",
		AnnotationActionType: "http.get",
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "agent-a", Labels: labels, Annotations: annotations},
		Spec: batchv1.JobSpec{
			Suspend:                 ptr.To(true),
			Parallelism:             ptr.To(int32(1)),
			Completions:             ptr.To(int32(1)),
			BackoffLimit:            ptr.To(int32(0)),
			ActiveDeadlineSeconds:   ptr.To(int64(90)),
			TTLSecondsAfterFinished: ptr.To(int32(3600)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					ServiceAccountName:           "airlock-action",
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To(int64(65532)),
						RunAsGroup:     ptr.To(int64(65532)),
						FSGroup:        ptr.To(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:                     "action",
						Image:                    testImage,
						ImagePullPolicy:          corev1.PullIfNotPresent,
						Command:                  []string{"/action", "--url", "https://example.com"},
						Resources:                corev1.ResourceRequirements{Requests: res, Limits: res},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             ptr.To(true),
							AllowPrivilegeEscalation: ptr.To(false),
							Privileged:               ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
					}},
					Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{
						EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("256Mi"))},
					}}},
				},
			},
		},
	}
}

func TestJobFor(t *testing.T) {
	secretRef := func(key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: SecretName(JobName(testWorkflowID, 2))},
			Key:                  key,
			Optional:             ptr.To(false),
		}}
	}
	tests := map[string]struct {
		spec func(*Spec)
		want func(*batchv1.Job)
	}{
		"minimal spec is suspended, hardened and defaulted": {},
		"env sorted, traceparent copied, secret env by reference": {
			spec: func(s *Spec) {
				s.Env = map[string]string{"B": "2", "A": "1"}
				s.SecretEnv = []string{"VAULT_TOKEN", "DB_PASSWORD"}
				s.PodAnnotations = map[string]string{
					AnnotationTraceparent:     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
					"kwok.airlock.dev/result": "ok",
				}
			},
			want: func(j *batchv1.Job) {
				j.Spec.Template.Annotations = map[string]string{
					AnnotationWorkflowID:      testWorkflowID,
					AnnotationAgentID:         "agent-a",
					AnnotationActionType:      "http.get",
					AnnotationTraceparent:     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
					"kwok.airlock.dev/result": "ok",
				}
				j.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{
					{Name: "A", Value: "1"},
					{Name: "B", Value: "2"},
					{Name: "TRACEPARENT", Value: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
					{Name: "VAULT_TOKEN", ValueFrom: secretRef("VAULT_TOKEN")},
					{Name: "DB_PASSWORD", ValueFrom: secretRef("DB_PASSWORD")},
				}
				// The same keys as read-only files the kubelet refreshes.
				j.Spec.Template.Spec.Containers[0].VolumeMounts = append(j.Spec.Template.Spec.Containers[0].VolumeMounts,
					corev1.VolumeMount{Name: "credentials", MountPath: "/var/run/airlock", ReadOnly: true})
				j.Spec.Template.Spec.Volumes = append(j.Spec.Template.Spec.Volumes, corev1.Volume{
					Name: "credentials",
					VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
						SecretName: SecretName(JobName(testWorkflowID, 2)),
						Items: []corev1.KeyToPath{
							{Key: "VAULT_TOKEN", Path: "vault-token"},
							{Key: "DB_PASSWORD", Path: "db-password"},
						},
						DefaultMode: ptr.To(int32(0o400)),
						Optional:    ptr.To(false),
					}},
				})
			},
		},
		"pod annotations cannot override the workflow id": {
			spec: func(s *Spec) { s.PodAnnotations = map[string]string{AnnotationWorkflowID: "forged"} },
		},
		"resources, deadline, ttl and service account from the spec": {
			spec: func(s *Spec) {
				s.CPU, s.Memory = "1", "1Gi"
				s.Deadline = 1500 * time.Millisecond // rounded up
				s.TTLAfterFinished = 10 * time.Minute
				s.ServiceAccount = "custom"
			},
			want: func(j *batchv1.Job) {
				res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}
				j.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: res, Limits: res}
				j.Spec.ActiveDeadlineSeconds = ptr.To(int64(2))
				j.Spec.TTLSecondsAfterFinished = ptr.To(int32(600))
				j.Spec.Template.Spec.ServiceAccountName = "custom"
			},
		},
		"image with tag and digest is pinned": {
			spec: func(s *Spec) { s.Image = "registry.example.com:5000/team/app:1.2@" + testDigest },
			want: func(j *batchv1.Job) {
				j.Spec.Template.Spec.Containers[0].Image = "registry.example.com:5000/team/app:1.2@" + testDigest
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := baseSpec()
			if tc.spec != nil {
				tc.spec(&s)
			}
			want := hardenedJob()
			if tc.want != nil {
				tc.want(want)
			}
			got, err := JobFor(s)
			require.NoError(t, err)
			if diff := cmp.Diff(want, got, cmpQuantity); diff != "" {
				t.Errorf("JobFor() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJobForRefuses(t *testing.T) {
	tests := map[string]struct {
		spec    func(*Spec)
		wantIs  error
		wantMsg string
	}{
		"image pinned by tag":         {spec: func(s *Spec) { s.Image = "nginx:1.27" }, wantIs: ErrImageNotPinned, wantMsg: `"nginx:1.27"`},
		"image without tag or digest": {spec: func(s *Spec) { s.Image = "nginx" }, wantIs: ErrImageNotPinned, wantMsg: `"nginx"`},
		"short digest":                {spec: func(s *Spec) { s.Image = "nginx@sha256:abc" }, wantIs: ErrImageNotPinned},
		"upper-case digest":           {spec: func(s *Spec) { s.Image = "nginx@sha256:" + strings.Repeat("AB", 32) }, wantIs: ErrImageNotPinned},
		"other digest algorithm":      {spec: func(s *Spec) { s.Image = "nginx@md5:" + strings.Repeat("ab", 16) }, wantIs: ErrImageNotPinned},
		"no deadline":                 {spec: func(s *Spec) { s.Deadline = 0 }, wantMsg: "deadline is required"},
		"no namespace":                {spec: func(s *Spec) { s.Namespace = "" }, wantMsg: "namespace is required"},
		"no workflow id":              {spec: func(s *Spec) { s.WorkflowID = "" }, wantMsg: "workflow id is required"},
		"no agent id":                 {spec: func(s *Spec) { s.AgentID = "" }, wantMsg: "agent id is required"},
		"negative action index":       {spec: func(s *Spec) { s.ActionIndex = -1 }, wantMsg: "negative"},
		"bad cpu":                     {spec: func(s *Spec) { s.CPU = "lots" }, wantMsg: "cpu"},
		"zero memory":                 {spec: func(s *Spec) { s.Memory = "0" }, wantMsg: "must be positive"},
		"env set twice": {
			spec:    func(s *Spec) { s.Env = map[string]string{"VAULT_TOKEN": "x"}; s.SecretEnv = []string{"VAULT_TOKEN"} },
			wantMsg: "env VAULT_TOKEN is set twice",
		},
		"env TRACEPARENT and the annotation": {
			spec: func(s *Spec) {
				s.Env = map[string]string{"TRACEPARENT": "x"}
				s.PodAnnotations = map[string]string{AnnotationTraceparent: "y"}
			},
			wantMsg: "TRACEPARENT is set twice",
		},
		"secret env that is no secret key": {spec: func(s *Spec) { s.SecretEnv = []string{"A B"} }, wantMsg: `secret env "A B"`},
		"two secret keys, one credential file": {
			spec:    func(s *Spec) { s.SecretEnv = []string{"API_KEY", "api-key"} },
			wantMsg: "secret env API_KEY and api-key share the credential file api-key",
		},
		"bad egress cidr": {spec: func(s *Spec) { s.Egress = []EgressRule{{CIDR: "example.com", Port: 443}} }, wantMsg: "egress rule 0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := baseSpec()
			tc.spec(&s)
			job, err := JobFor(s)
			require.Error(t, err)
			assert.Nil(t, job)
			if tc.wantIs != nil {
				assert.ErrorIs(t, err, tc.wantIs)
			}
			assert.Contains(t, err.Error(), tc.wantMsg)
		})
	}
}

func TestNamesAndLabelsAreValid(t *testing.T) {
	tests := map[string]struct {
		workflowID, agentID, actionType string
		index                           int
	}{
		"typical":             {workflowID: "cycle/agent-a/0001", agentID: "agent-a", actionType: "http.get"},
		"long ids":            {workflowID: "cycle/" + strings.Repeat("x", 500) + "/1", agentID: strings.Repeat("agent", 30), actionType: strings.Repeat("t", 100), index: 12},
		"unsafe characters":   {workflowID: "cycle/ägent ü/ß", agentID: "Agent/Ünsafe id!", actionType: "a/b c"},
		"only unsafe":         {workflowID: "//", agentID: "///", actionType: "---"},
		"huge action index":   {workflowID: "w", agentID: "a", index: 1 << 62},
		"label-safe 63 chars": {workflowID: "w", agentID: strings.Repeat("a", 63), actionType: "x"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := baseSpec()
			s.WorkflowID, s.AgentID, s.ActionType, s.ActionIndex = tc.workflowID, tc.agentID, tc.actionType, tc.index
			job, err := JobFor(s)
			require.NoError(t, err)
			assert.Empty(t, validation.IsDNS1123Label(job.Name), "job name %q", job.Name)
			assert.LessOrEqual(t, len(job.Name), 63)
			assert.Empty(t, validation.IsDNS1123Subdomain(SecretName(job.Name)))
			assert.Empty(t, validation.IsDNS1123Subdomain(NetworkPolicyName(job.Name)))
			for k, v := range job.Labels {
				assert.Empty(t, validation.IsValidLabelValue(v), "label %s=%q", k, v)
				assert.Equal(t, v, job.Spec.Template.Labels[k])
			}
			assert.Equal(t, tc.workflowID, job.Annotations[AnnotationWorkflowID], "full workflow id kept")
		})
	}
}

func TestJobNameIsDeterministic(t *testing.T) {
	a := JobName("cycle/agent-a/0001", 0)
	assert.Equal(t, a, JobName("cycle/agent-a/0001", 0), "same input, same name")
	assert.NotEqual(t, a, JobName("cycle/agent-a/0001", 1), "other action")
	assert.NotEqual(t, a, JobName("cycle/agent-a/0002", 0), "other workflow")
	assert.Regexp(t, `^airlock-[0-9a-f]{16}-0$`, a)
	// The label is the same for every action of a workflow.
	assert.Equal(t, WorkflowLabel("cycle/agent-a/0001"), WorkflowLabel("cycle/agent-a/0001"))
	assert.Equal(t, "agent-a", AgentLabel("agent-a"), "valid label values are kept readable")
	assert.NotEqual(t, AgentLabel(strings.Repeat("a", 64)), AgentLabel(strings.Repeat("a", 65)), "long values hash apart")
}

func createdJob() *batchv1.Job {
	j := hardenedJob()
	j.UID = types.UID("3b0c5a52-1c0e-4f1b-9b0a-5d3c1f0e2a11")
	return j
}

func TestSecretFor(t *testing.T) {
	job := createdJob()
	owner := []metav1.OwnerReference{{
		APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	tests := map[string]struct {
		data        map[string][]byte
		annotations map[string]string
		want        *corev1.Secret
	}{
		"owned, mutable (rotation), labelled like the job": {
			data:        map[string][]byte{"VAULT_TOKEN": []byte("s.secret")},
			annotations: map[string]string{"airlock.dev/lease-accessor": "acc123"},
			want: &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name: job.Name + "-env", Namespace: "agent-a",
					Labels: job.Labels,
					Annotations: map[string]string{
						"airlock.dev/lease-accessor": "acc123",
						AnnotationWorkflowID:         testWorkflowID,
						AnnotationAgentID:            "agent-a",
						AnnotationActionType:         "http.get",
					},
					OwnerReferences: owner,
				},
				Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{"VAULT_TOKEN": []byte("s.secret")},
			},
		},
		"no annotations": {
			want: &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name: job.Name + "-env", Namespace: "agent-a",
					Labels:          job.Labels,
					Annotations:     job.Annotations,
					OwnerReferences: owner,
				},
				Type: corev1.SecretTypeOpaque,
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := SecretFor(job, tc.data, tc.annotations)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SecretFor() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNetworkPolicyFor(t *testing.T) {
	job := createdJob()
	meta := metav1.ObjectMeta{
		Name: job.Name + "-egress", Namespace: "agent-a",
		Labels:      job.Labels,
		Annotations: job.Annotations,
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}},
	}
	selector := metav1.LabelSelector{MatchLabels: map[string]string{
		"batch.kubernetes.io/job-name":       job.Name,
		"batch.kubernetes.io/controller-uid": string(job.UID),
	}}
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	port := func(p corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: ptr.To(p), Port: ptr.To(intstr.FromInt32(n))}
	}
	tests := map[string]struct {
		egress []EgressRule
		want   networkingv1.NetworkPolicySpec
	}{
		"no rules denies all egress": {
			want: networkingv1.NetworkPolicySpec{
				PodSelector: selector, PolicyTypes: both,
				Ingress: []networkingv1.NetworkPolicyIngressRule{},
				Egress:  []networkingv1.NetworkPolicyEgressRule{},
			},
		},
		"allow-list in order, TCP by default, DNS only when asked": {
			egress: []EgressRule{
				{CIDR: "192.0.2.10/32", Port: 443},
				{CIDR: "198.51.100.0/24", Port: 5353, Protocol: "udp"},
				{CIDR: ClusterDNS},
			},
			want: networkingv1.NetworkPolicySpec{
				PodSelector: selector, PolicyTypes: both,
				Ingress: []networkingv1.NetworkPolicyIngressRule{},
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{
						To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.10/32"}}},
						Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, 443)},
					},
					{
						To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "198.51.100.0/24"}}},
						Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, 5353)},
					},
					{
						To: []networkingv1.NetworkPolicyPeer{{
							NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
							PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
						}},
						Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, 53), port(corev1.ProtocolTCP, 53)},
					},
				},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			want := &networkingv1.NetworkPolicy{ObjectMeta: meta, Spec: tc.want}
			got := NetworkPolicyFor(job, tc.egress)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("NetworkPolicyFor() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateEgress(t *testing.T) {
	tests := map[string]struct {
		rules   []EgressRule
		wantErr string
	}{
		"none":                   {},
		"ipv4 and ipv6":          {rules: []EgressRule{{CIDR: "192.0.2.0/24", Port: 443}, {CIDR: "2001:db8::/32", Port: 443, Protocol: "TCP"}}},
		"cluster dns":            {rules: []EgressRule{{CIDR: ClusterDNS}, {CIDR: ClusterDNS, Port: 53}}},
		"host bits set":          {rules: []EgressRule{{CIDR: "192.0.2.1/24", Port: 443}}, wantErr: "host bits set (network is 192.0.2.0/24)"},
		"no prefix length":       {rules: []EgressRule{{CIDR: "192.0.2.1", Port: 443}}, wantErr: "cidr"},
		"hostname":               {rules: []EgressRule{{CIDR: "api.example.com", Port: 443}}, wantErr: "cidr"},
		"no port":                {rules: []EgressRule{{CIDR: "192.0.2.0/24"}}, wantErr: "port 0 out of range"},
		"port too big":           {rules: []EgressRule{{CIDR: "192.0.2.0/24", Port: 70000}}, wantErr: "out of range"},
		"unknown protocol":       {rules: []EgressRule{{CIDR: "192.0.2.0/24", Port: 1, Protocol: "icmp"}}, wantErr: "unknown protocol"},
		"cluster dns other port": {rules: []EgressRule{{CIDR: ClusterDNS, Port: 443}}, wantErr: "cluster-dns"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := validateEgress(tc.rules)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestTruncateUTF8(t *testing.T) {
	tests := map[string]struct {
		in   string
		n    int
		want string
	}{
		"short stays":           {in: "ok", n: 4, want: "ok"},
		"cut at n":              {in: "abcdef", n: 4, want: "abcd"},
		"never splits a rune":   {in: "abcé", n: 4, want: "abc"}, // é is 2 bytes
		"four-byte rune at end": {in: "ab😀", n: 5, want: "ab"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, truncateUTF8(tc.in, tc.n))
		})
	}
}
