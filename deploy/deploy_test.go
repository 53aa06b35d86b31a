package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
)

// stack is a real control plane (etcd, kube-apiserver with
// --authorization-mode=Node,RBAC, controller-manager, scheduler) whose one
// node is simulated by kwok.
var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(devstack.Main(m, devstack.Options{Kube: true}, &stack))
}

const (
	rbacDir = "rbac"
	// placeholder is the agent namespace in worker.yaml's RoleBinding template.
	placeholder = "${AGENT_NAMESPACE}"

	systemNS = "airlock-system"
	agentNS  = "airlock-agent-a"
	agentID  = "agent-a"
	otherNS  = "other-team"

	workerRole    = "airlock-worker"
	bootstrapRole = "airlock-bootstrap"

	workerUser    = "system:serviceaccount:" + systemNS + ":" + workerRole
	bootstrapUser = "system:serviceaccount:" + systemNS + ":" + bootstrapRole

	// kwokResult is the Pod annotation devstack's kwok stage turns into the
	// container's termination message.
	kwokResult = "kwok.airlock.dev/result"
)

// serviceAccountGroups are the groups the apiserver gives a ServiceAccount
// of namespace ns when it authenticates with its token.
func serviceAccountGroups(ns string) []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

// access is one authorisation question: may a subject do Verb on
// Group/Resource (Resource may carry a subresource: "pods/log"), on the
// object Name if set, in Namespace ("" = cluster-wide)?
type access struct {
	Namespace, Verb, Group, Resource, Name string
}

func (a access) String() string {
	s := a.Verb + " " + a.Resource
	if a.Group != "" {
		s += "." + a.Group
	}
	if a.Name != "" {
		s += "/" + a.Name
	}
	if a.Namespace != "" {
		s += " in " + a.Namespace
	}
	return s
}

// workerNeeds is every Kubernetes call of the worker's code (k8s/runner.go,
// k8s/wait.go, k8s/dryrun.go; activities only call the Runner), one row per
// verb and resource. The ClusterRole airlock-worker must grant exactly this.
var workerNeeds = []struct {
	why string
	access
}{
	{"CreateJob creates the suspended action Job and DryRun asks admission with a dry-run create", access{Verb: "create", Group: "batch", Resource: "jobs"}},
	{"a retried CreateJob, Start, Wait and Logs read the Job", access{Verb: "get", Group: "batch", Resource: "jobs"}},
	{"the kill switch finds an agent's Jobs (DeleteAgentJobs)", access{Verb: "list", Group: "batch", Resource: "jobs"}},
	{"Wait follows the Job until it finishes", access{Verb: "watch", Group: "batch", Resource: "jobs"}},
	{"Start unsuspends the Job with a merge patch", access{Verb: "patch", Group: "batch", Resource: "jobs"}},
	{"cancellation and the kill switch delete the Job", access{Verb: "delete", Group: "batch", Resource: "jobs"}},
	{"CreateSecret hands the action its Vault token", access{Verb: "create", Resource: "secrets"}},
	{"GetSecret finds the lease of a retried activity and Start checks the Secret's keys", access{Verb: "get", Resource: "secrets"}},
	{"Cleanup deletes the credentials when the action ends", access{Verb: "delete", Resource: "secrets"}},
	{"rotation writes the next credential into a long Job's Secret (update, conditional on its resourceVersion)", access{Verb: "update", Resource: "secrets"}},
	{"rotation lists the accessors still valid on the Secret (merge patch of annotations)", access{Verb: "patch", Resource: "secrets"}},
	{"CreateNetworkPolicy puts the egress policy in place before the Pod", access{Verb: "create", Group: "networking.k8s.io", Resource: "networkpolicies"}},
	{"Start checks the egress policy exists and selects the Job's Pods", access{Verb: "get", Group: "networking.k8s.io", Resource: "networkpolicies"}},
	{"a retried CreateNetworkPolicy restores the action's egress rules", access{Verb: "update", Group: "networking.k8s.io", Resource: "networkpolicies"}},
	{"Cleanup deletes the egress policy", access{Verb: "delete", Group: "networking.k8s.io", Resource: "networkpolicies"}},
	{"Wait reads the action's result from its Pod's termination message", access{Verb: "list", Resource: "pods"}},
	{"the kill switch deletes the Job's Pods at once", access{Verb: "delete", Resource: "pods"}},
	{"Logs reads the action container's log", access{Verb: "get", Resource: "pods/log"}},
}

// manifest is one object read from deploy/rbac.
type manifest struct {
	file string
	obj  runtime.Object
}

// readManifests decodes every object of the YAML files in deploy/rbac,
// with the agent namespace placeholder replaced by agentNamespace unless it
// is empty. Decoding is strict: a misspelt field fails rather than being
// silently dropped (a dropped "resourceNames" would widen a rule).
func readManifests(agentNamespace string) ([]manifest, error) {
	files, err := filepath.Glob(filepath.Join(rbacDir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no manifests in %s", rbacDir)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []manifest
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if agentNamespace != "" {
			b = bytes.ReplaceAll(b, []byte(placeholder), []byte(agentNamespace))
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", file, err)
			}
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				return nil, fmt.Errorf("parse %s: %w", file, err)
			}
			if string(bytes.TrimSpace(js)) == "null" {
				continue // only comments
			}
			obj, _, err := decoder.Decode(js, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("decode %s: %w", file, err)
			}
			out = append(out, manifest{file: filepath.Base(file), obj: obj})
		}
	}
	return out, nil
}

// cluster is the shared state of the tests: manifests applied the way an
// operator would, and clients acting as each identity.
type cluster struct {
	admin     kubernetes.Interface
	worker    kubernetes.Interface // impersonates the worker's ServiceAccount
	bootstrap kubernetes.Interface // impersonates the bootstrap ServiceAccount
	// workerBinding is the RoleBinding template of worker.yaml, for agentNS.
	workerBinding *rbacv1.RoleBinding
}

var (
	setupOnce  sync.Once
	setupState *cluster
	setupErr   error
)

// setup applies the manifests once per test binary:
//   - as cluster admin: namespaces airlock-system and other-team (each with a
//     Secret the worker must not read), worker.yaml without its RoleBinding
//     template, and bootstrap.yaml;
//   - as the bootstrap identity: the agent namespace (k8s.Runner.EnsureNamespace,
//     the very code operators run) and the worker's RoleBinding in it.
func setup(t *testing.T) *cluster {
	t.Helper()
	setupOnce.Do(func() {
		docs, err := readManifests(agentNS)
		if err != nil {
			setupErr = err
			return
		}
		setupState, setupErr = setUpCluster(context.Background(), docs)
	})
	require.NoError(t, setupErr, "set up the cluster")
	return setupState
}

func setUpCluster(ctx context.Context, docs []manifest) (*cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c := &cluster{}
	var err error
	if c.admin, err = kubernetes.NewForConfig(stack.RestConfig); err != nil {
		return nil, err
	}
	if c.worker, err = impersonating(workerUser, serviceAccountGroups(systemNS)); err != nil {
		return nil, err
	}
	if c.bootstrap, err = impersonating(bootstrapUser, serviceAccountGroups(systemNS)); err != nil {
		return nil, err
	}

	for _, ns := range []string{systemNS, otherNS} {
		_, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err := ignoreExists(err); err != nil {
			return nil, fmt.Errorf("create namespace %s: %w", ns, err)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "database-password", Namespace: ns},
			StringData: map[string]string{"password": "not-for-the-worker"},
		}
		_, err = c.admin.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
		if err := ignoreExists(err); err != nil {
			return nil, fmt.Errorf("create secret in %s: %w", ns, err)
		}
	}

	for _, d := range docs {
		if rb, ok := d.obj.(*rbacv1.RoleBinding); ok && d.file == "worker.yaml" {
			c.workerBinding = rb
			continue // the bootstrap identity creates it, below
		}
		if err := create(ctx, c.admin, d.obj); err != nil {
			return nil, fmt.Errorf("apply %s: %w", d.file, err)
		}
	}
	if c.workerBinding == nil {
		return nil, errors.New("worker.yaml has no RoleBinding template")
	}

	// RBAC changes reach the authorizer through an informer: wait for them.
	if err := awaitAllowed(ctx, c.admin, bootstrapUser, access{Verb: "bind", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: workerRole}); err != nil {
		return nil, err
	}
	if err := k8s.NewRunner(c.bootstrap).EnsureNamespace(ctx, agentNS, agentID, k8s.Quota{}); err != nil {
		return nil, fmt.Errorf("bootstrap %s as %s: %w", agentNS, bootstrapUser, err)
	}
	if err := create(ctx, c.bootstrap, c.workerBinding); err != nil {
		return nil, fmt.Errorf("bind the worker in %s as %s: %w", agentNS, bootstrapUser, err)
	}
	// One rule visible means the ClusterRole and the RoleBinding both are;
	// the tests check every rule.
	if err := awaitAllowed(ctx, c.admin, workerUser, access{Namespace: agentNS, Verb: "get", Group: "batch", Resource: "jobs"}); err != nil {
		return nil, err
	}
	return c, nil
}

// impersonating returns a client of the admin config that acts as user:
// every request is authorised as that user and groups, not as admin.
func impersonating(user string, groups []string) (kubernetes.Interface, error) {
	cfg := rest.CopyConfig(stack.RestConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return kubernetes.NewForConfig(cfg)
}

// create creates one decoded manifest object; one that exists already is fine.
func create(ctx context.Context, cs kubernetes.Interface, obj runtime.Object) error {
	opts := metav1.CreateOptions{}
	var err error
	switch o := obj.(type) {
	case *corev1.ServiceAccount:
		_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.ClusterRole:
		_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, opts)
	case *rbacv1.ClusterRoleBinding:
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
	case *rbacv1.Role:
		_, err = cs.RbacV1().Roles(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.RoleBinding:
		_, err = cs.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, opts)
	default:
		return fmt.Errorf("no client for %T", obj)
	}
	return ignoreExists(err)
}

func ignoreExists(err error) error {
	if k8serrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// review asks the apiserver's authorizer whether user (in groups) may do a.
func review(ctx context.Context, admin kubernetes.Interface, user string, groups []string, a access) (authorizationv1.SubjectAccessReviewStatus, error) {
	resource, subresource, _ := strings.Cut(a.Resource, "/")
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: a.Namespace, Verb: a.Verb, Group: a.Group,
			Resource: resource, Subresource: subresource, Name: a.Name,
		},
	}}
	got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return authorizationv1.SubjectAccessReviewStatus{}, fmt.Errorf("review %s for %s: %w", a, user, err)
	}
	return got.Status, nil
}

func awaitAllowed(ctx context.Context, admin kubernetes.Interface, user string, a access) error {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		st, err := review(ctx, admin, user, serviceAccountGroups(systemNS), a)
		return st.Allowed, err
	})
	if err != nil {
		return fmt.Errorf("wait until %s may %s: %w", user, a, err)
	}
	return nil
}

// assertAccess checks one row of an access table with a SubjectAccessReview
// against the real apiserver.
func assertAccess(t *testing.T, c *cluster, user string, a access, wantAllowed bool) {
	t.Helper()
	st, err := review(t.Context(), c.admin, user, serviceAccountGroups(systemNS), a)
	require.NoError(t, err)
	if wantAllowed {
		assert.True(t, st.Allowed, "%s must be allowed to %s (reason %q, error %q)", user, a, st.Reason, st.EvaluationError)
	} else {
		assert.False(t, st.Allowed, "%s must NOT be allowed to %s (allowed because %q)", user, a, st.Reason)
	}
}

func TestWorkerMayDoEverythingItsCodeDoesInAnAgentNamespace(t *testing.T) {
	c := setup(t)
	for _, need := range workerNeeds {
		t.Run(need.access.String()+": "+need.why, func(t *testing.T) {
			a := need.access
			a.Namespace = agentNS
			assertAccess(t, c, workerUser, a, true)
		})
	}
}

func TestInvariant8WorkerIsDeniedOutsideItsJob(t *testing.T) {
	c := setup(t)
	const rbacGroup = "rbac.authorization.k8s.io"
	tests := []struct {
		name string
		access
	}{
		// Other namespaces: nothing, not even its own.
		{"cannot read another team's secrets", access{Namespace: otherNS, Verb: "get", Resource: "secrets", Name: "database-password"}},
		{"cannot read secrets next to itself in airlock-system", access{Namespace: systemNS, Verb: "get", Resource: "secrets", Name: "database-password"}},
		{"cannot run a job in another team's namespace", access{Namespace: otherNS, Verb: "create", Group: "batch", Resource: "jobs"}},
		{"cannot see another team's jobs", access{Namespace: otherNS, Verb: "list", Group: "batch", Resource: "jobs"}},
		{"cannot unsuspend another team's job", access{Namespace: otherNS, Verb: "patch", Group: "batch", Resource: "jobs"}},
		{"cannot delete another team's job", access{Namespace: otherNS, Verb: "delete", Group: "batch", Resource: "jobs"}},
		{"cannot plant a secret in another team's namespace", access{Namespace: otherNS, Verb: "create", Resource: "secrets"}},
		{"cannot delete another team's secret", access{Namespace: otherNS, Verb: "delete", Resource: "secrets", Name: "database-password"}},
		{"cannot loosen another team's network policy", access{Namespace: otherNS, Verb: "update", Group: "networking.k8s.io", Resource: "networkpolicies"}},
		{"cannot read another team's pods", access{Namespace: otherNS, Verb: "list", Resource: "pods"}},
		{"cannot create jobs in airlock-system", access{Namespace: systemNS, Verb: "create", Group: "batch", Resource: "jobs"}},

		// In the agent namespace: only what the Runner does.
		{"cannot create a pod directly, bypassing the Job", access{Namespace: agentNS, Verb: "create", Resource: "pods"}},
		{"cannot change a running pod", access{Namespace: agentNS, Verb: "patch", Resource: "pods"}},
		{"cannot exec into an action pod", access{Namespace: agentNS, Verb: "create", Resource: "pods/exec"}},
		{"cannot exec into an action pod over a websocket", access{Namespace: agentNS, Verb: "get", Resource: "pods/exec"}},
		{"cannot attach to an action pod", access{Namespace: agentNS, Verb: "create", Resource: "pods/attach"}},
		{"cannot port-forward to an action pod", access{Namespace: agentNS, Verb: "create", Resource: "pods/portforward"}},
		{"cannot add an ephemeral debug container", access{Namespace: agentNS, Verb: "patch", Resource: "pods/ephemeralcontainers"}},
		{"cannot list secrets to find other actions' tokens", access{Namespace: agentNS, Verb: "list", Resource: "secrets"}},
		{"cannot watch secrets to catch other actions' tokens", access{Namespace: agentNS, Verb: "watch", Resource: "secrets"}},
		{"cannot rewrite another team's secret", access{Namespace: otherNS, Verb: "update", Resource: "secrets", Name: "database-password"}},
		{"cannot rewrite secrets next to itself in airlock-system", access{Namespace: systemNS, Verb: "patch", Resource: "secrets", Name: "database-password"}},
		{"cannot replace a job wholesale (Start only patches)", access{Namespace: agentNS, Verb: "update", Group: "batch", Resource: "jobs"}},
		{"cannot delete every job at once", access{Namespace: agentNS, Verb: "deletecollection", Group: "batch", Resource: "jobs"}},
		{"cannot mint tokens for the action service account", access{Namespace: agentNS, Verb: "create", Resource: "serviceaccounts/token", Name: k8s.DefaultServiceAccount}},
		{"cannot loosen the namespace quota", access{Namespace: agentNS, Verb: "update", Resource: "resourcequotas", Name: k8s.ResourceQuotaName}},
		{"cannot delete the namespace's default limits", access{Namespace: agentNS, Verb: "delete", Resource: "limitranges", Name: k8s.LimitRangeName}},
		{"cannot read config maps", access{Namespace: agentNS, Verb: "get", Resource: "configmaps"}},
		{"cannot create cron jobs", access{Namespace: agentNS, Verb: "create", Group: "batch", Resource: "cronjobs"}},
		{"cannot create deployments", access{Namespace: agentNS, Verb: "create", Group: "apps", Resource: "deployments"}},

		// RBAC: no way to grow its own rights.
		{"cannot create role bindings", access{Namespace: agentNS, Verb: "create", Group: rbacGroup, Resource: "rolebindings"}},
		{"cannot create roles", access{Namespace: agentNS, Verb: "create", Group: rbacGroup, Resource: "roles"}},
		{"cannot edit its own cluster role", access{Verb: "update", Group: rbacGroup, Resource: "clusterroles", Name: workerRole}},
		{"cannot bind cluster roles", access{Verb: "bind", Group: rbacGroup, Resource: "clusterroles", Name: "cluster-admin"}},
		{"cannot escalate cluster roles", access{Verb: "escalate", Group: rbacGroup, Resource: "clusterroles", Name: workerRole}},
		{"cannot escalate roles in the agent namespace", access{Namespace: agentNS, Verb: "escalate", Group: rbacGroup, Resource: "roles"}},
		{"cannot impersonate users", access{Verb: "impersonate", Resource: "users", Name: "admin"}},
		{"cannot impersonate groups", access{Verb: "impersonate", Resource: "groups", Name: "system:masters"}},
		{"cannot impersonate service accounts", access{Namespace: agentNS, Verb: "impersonate", Resource: "serviceaccounts", Name: k8s.DefaultServiceAccount}},

		// Cluster-wide: nothing.
		{"cannot create namespaces (bootstrap's job)", access{Verb: "create", Resource: "namespaces"}},
		{"cannot relabel its namespace's pod security", access{Verb: "patch", Resource: "namespaces", Name: agentNS}},
		{"cannot read nodes", access{Verb: "get", Resource: "nodes", Name: devstack.DefaultNodeName}},
		{"cannot list namespaces", access{Verb: "list", Resource: "namespaces"}},
		{"cannot list jobs across all namespaces", access{Verb: "list", Group: "batch", Resource: "jobs"}},
		{"cannot read secrets across all namespaces", access{Verb: "list", Resource: "secrets"}},
		{"cannot watch pods across all namespaces", access{Verb: "watch", Resource: "pods"}},
		{"cannot create cluster role bindings", access{Verb: "create", Group: rbacGroup, Resource: "clusterrolebindings"}},
		{"cannot create persistent volumes", access{Verb: "create", Resource: "persistentvolumes"}},
		{"cannot install admission webhooks", access{Verb: "create", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"}},
		{"cannot approve certificate requests", access{Verb: "update", Group: "certificates.k8s.io", Resource: "certificatesigningrequests/approval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertAccess(t, c, workerUser, tt.access, false)
		})
	}
}

func TestBootstrapRoleCanOnlyPrepareAgentNamespaces(t *testing.T) {
	c := setup(t)
	const rbacGroup = "rbac.authorization.k8s.io"
	tests := []struct {
		name  string
		allow bool
		access
	}{
		{"creates an agent namespace", true, access{Verb: "create", Resource: "namespaces"}},
		{"repairs an agent namespace's pod security labels", true, access{Verb: "update", Resource: "namespaces", Name: agentNS}},
		{"creates the namespace quota", true, access{Namespace: agentNS, Verb: "create", Resource: "resourcequotas"}},
		{"repairs a loosened default-deny policy", true, access{Namespace: agentNS, Verb: "update", Group: "networking.k8s.io", Resource: "networkpolicies", Name: k8s.DefaultDenyPolicyName}},
		{"binds the worker in an agent namespace", true, access{Namespace: agentNS, Verb: "create", Group: rbacGroup, Resource: "rolebindings"}},
		{"may bind the airlock-worker cluster role", true, access{Verb: "bind", Group: rbacGroup, Resource: "clusterroles", Name: workerRole}},

		{"may not bind cluster-admin", false, access{Verb: "bind", Group: rbacGroup, Resource: "clusterroles", Name: "cluster-admin"}},
		{"may not bind admin", false, access{Verb: "bind", Group: rbacGroup, Resource: "clusterroles", Name: "admin"}},
		{"may not bind an unnamed cluster role", false, access{Verb: "bind", Group: rbacGroup, Resource: "clusterroles"}},
		{"may not escalate the worker role", false, access{Verb: "escalate", Group: rbacGroup, Resource: "clusterroles", Name: workerRole}},
		{"may not edit the worker role", false, access{Verb: "update", Group: rbacGroup, Resource: "clusterroles", Name: workerRole}},
		{"may not create cluster role bindings", false, access{Verb: "create", Group: rbacGroup, Resource: "clusterrolebindings"}},
		{"may not create roles", false, access{Namespace: agentNS, Verb: "create", Group: rbacGroup, Resource: "roles"}},
		{"may not rewrite other role bindings", false, access{Namespace: otherNS, Verb: "update", Group: rbacGroup, Resource: "rolebindings", Name: "team-admins"}},
		{"may not loosen another team's network policy", false, access{Namespace: otherNS, Verb: "update", Group: "networking.k8s.io", Resource: "networkpolicies", Name: "allow-frontend"}},
		{"may not delete namespaces", false, access{Verb: "delete", Resource: "namespaces", Name: otherNS}},
		{"may not read secrets", false, access{Namespace: otherNS, Verb: "get", Resource: "secrets", Name: "database-password"}},
		{"may not run jobs", false, access{Namespace: agentNS, Verb: "create", Group: "batch", Resource: "jobs"}},
		{"may not create pods", false, access{Namespace: agentNS, Verb: "create", Resource: "pods"}},
		{"may not mint service account tokens", false, access{Namespace: agentNS, Verb: "create", Resource: "serviceaccounts/token", Name: k8s.DefaultServiceAccount}},
		{"may not impersonate", false, access{Verb: "impersonate", Resource: "users", Name: "admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertAccess(t, c, bootstrapUser, tt.access, tt.allow)
		})
	}
}

// TestWorkerRightsAreExactlyWhatItsCodeUses enumerates what the apiserver
// lets the worker do (SelfSubjectRulesReview, as the worker) in the agent
// namespace and in a namespace it has no binding in: the difference, i.e.
// everything the RoleBinding adds, must be workerNeeds and nothing else.
// A rule added to the ClusterRole without a caller fails here.
func TestInvariant8WorkerRightsAreExactlyWhatItsCodeUses(t *testing.T) {
	c := setup(t)
	inAgentNS := rulesOf(t, c.worker, agentNS)
	inOtherNS := rulesOf(t, c.worker, otherNS)

	var added []string
	for a := range inAgentNS {
		if !inOtherNS[a] {
			added = append(added, a.String())
		}
	}
	slices.Sort(added)
	assert.Empty(t, cmp.Diff(neededList(), added), "rights the RoleBinding gives the worker (-needed by the code +granted)")

	for a := range inOtherNS {
		assert.NotContains(t, []string{"secrets", "jobs", "pods", "pods/log", "networkpolicies"}, a.Resource,
			"outside agent namespaces the worker has %s", a)
	}
}

// rulesOf flattens the client's SelfSubjectRulesReview in ns into single
// accesses (namespace left empty).
func rulesOf(t *testing.T, cs kubernetes.Interface, ns string) map[access]bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(t.Context(),
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.False(t, r.Status.Incomplete, "rules review incomplete: %s", r.Status.EvaluationError)
	out := map[access]bool{}
	for _, rule := range r.Status.ResourceRules {
		out = flattenRule(out, rule.APIGroups, rule.Resources, rule.Verbs, rule.ResourceNames)
	}
	return out
}

func flattenRule(out map[access]bool, groups, resources, verbs, names []string) map[access]bool {
	if len(names) == 0 {
		names = []string{""}
	}
	for _, g := range groups {
		for _, r := range resources {
			for _, v := range verbs {
				for _, n := range names {
					out[access{Verb: v, Group: g, Resource: r, Name: n}] = true
				}
			}
		}
	}
	return out
}

func neededList() []string {
	var out []string
	for _, n := range workerNeeds {
		out = append(out, n.access.String())
	}
	slices.Sort(out)
	return out
}

// TestManifests checks the files themselves, before any apiserver sees them.
func TestManifests(t *testing.T) {
	docs, err := readManifests("")
	require.NoError(t, err)

	var (
		workerRoles, bootstrapRoles []*rbacv1.ClusterRole
		workerBindings              []*rbacv1.RoleBinding
	)
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *rbacv1.ClusterRole:
			switch o.Name {
			case workerRole:
				workerRoles = append(workerRoles, o)
			case bootstrapRole:
				bootstrapRoles = append(bootstrapRoles, o)
			}
		case *rbacv1.ClusterRoleBinding:
			assert.NotEqual(t, workerRole, o.RoleRef.Name, "%s: the worker role must never be bound cluster-wide (ClusterRoleBinding %s)", d.file, o.Name)
			for _, s := range o.Subjects {
				assert.NotEqual(t, workerRole, s.Name, "%s: ClusterRoleBinding %s gives the worker cluster-wide rights", d.file, o.Name)
			}
		case *rbacv1.RoleBinding:
			if o.RoleRef.Name == workerRole {
				workerBindings = append(workerBindings, o)
			}
		}
	}

	t.Run("worker role grants exactly what the code uses", func(t *testing.T) {
		require.Len(t, workerRoles, 1)
		role := workerRoles[0]
		assert.Nil(t, role.AggregationRule, "an aggregated role takes its rules from elsewhere")
		for k := range role.Labels {
			assert.NotContains(t, k, "aggregate-to", "the worker role must not flow into built-in roles")
		}
		granted := map[access]bool{}
		for _, r := range role.Rules {
			assert.Empty(t, r.NonResourceURLs, "non-resource URLs are cluster-wide")
			granted = flattenRule(granted, r.APIGroups, r.Resources, r.Verbs, r.ResourceNames)
		}
		var got []string
		for a := range granted {
			got = append(got, a.String())
		}
		slices.Sort(got)
		assert.Empty(t, cmp.Diff(neededList(), got), "worker.yaml ClusterRole (-needed by the code +granted)")
	})

	t.Run("worker is bound only per agent namespace", func(t *testing.T) {
		require.Len(t, workerBindings, 1, "one RoleBinding template")
		rb := workerBindings[0]
		assert.Equal(t, placeholder, rb.Namespace, "the template's namespace is the placeholder, not a real namespace")
		assert.Equal(t, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: workerRole}, rb.RoleRef)
		assert.Equal(t, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: workerRole, Namespace: systemNS}}, rb.Subjects)
	})

	t.Run("bootstrap role binds nothing but the worker role", func(t *testing.T) {
		require.Len(t, bootstrapRoles, 1)
		for _, r := range bootstrapRoles[0].Rules {
			for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
				assert.NotContains(t, field, "*", "no wildcards: %+v", r)
			}
			assert.NotContains(t, r.Verbs, "escalate")
			assert.NotContains(t, r.Verbs, "impersonate")
			if slices.Contains(r.Verbs, "bind") {
				assert.Equal(t, []string{workerRole}, r.ResourceNames, "bind only on the worker role: %+v", r)
			}
		}
	})
}
