package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/airlockhq/airlock/internal/devstack"
)

// kustomize renders dir with the kubectl built from the pinned Kubernetes
// (its built-in kustomize), as an operator's `kubectl apply -k` would.
func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	bin, err := devstack.DefaultBinDir()
	require.NoError(t, err)
	out, err := exec.CommandContext(t.Context(), filepath.Join(bin, "kubectl"), "kustomize", dir).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("kubectl kustomize %s: %s", dir, ee.Stderr)
	}
	require.NoError(t, err)
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		require.NoError(t, err)
		u := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal(doc, &u.Object))
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// The kustomize base and the dev overlay render, and every object they
// render is admitted by the real apiserver (server-side dry run). Their
// Pods are admitted by Pod Security "restricted", enforced on
// airlock-system by the base's own Namespace.
func TestKustomizeRendersAndIsAdmitted(t *testing.T) {
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(stack.RestConfig)
	require.NoError(t, err)
	dyn, err := dynamic.NewForConfig(stack.RestConfig)
	require.NoError(t, err)
	mapper := func(u *unstructured.Unstructured) schema.GroupVersionResource {
		gvk := u.GroupVersionKind()
		m, err := restMapper(cs).RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(t, err, gvk.String())
		return m.Resource
	}
	for _, dir := range []string{"base", "overlays/dev"} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomize(t, dir)
			kinds := map[string]int{}
			var deployments []appsv1.Deployment
			for _, u := range objs {
				kinds[u.GetKind()]++
				if u.GetKind() == "Deployment" {
					var d appsv1.Deployment
					require.NoError(t, runtimeFromUnstructured(u, &d))
					deployments = append(deployments, d)
				}
			}
			assert.Equal(t, 3, kinds["Deployment"], "worker, approvals, codec")
			assert.Equal(t, 3, kinds["PodDisruptionBudget"])
			assert.GreaterOrEqual(t, kinds["Service"], 3)
			assert.GreaterOrEqual(t, kinds["NetworkPolicy"], 4)
			assert.Zero(t, kinds["RoleBinding"], "agent-namespace bindings are per agent, made by the bootstrap identity")

			// The namespace exists for real (objects in it are dry-run);
			// the base's Namespace object carries the PSA labels.
			for _, u := range objs {
				if u.GetKind() != "Namespace" {
					continue
				}
				assert.Equal(t, "restricted", u.GetLabels()["pod-security.kubernetes.io/enforce"])
				ensureNamespace(t, cs, u.GetName(), u.GetLabels())
			}
			// Pods need their ServiceAccount to exist: create those for real too.
			for _, u := range objs {
				if u.GetKind() != "ServiceAccount" {
					continue
				}
				var sa corev1.ServiceAccount
				require.NoError(t, runtimeFromUnstructured(u, &sa))
				if _, err := cs.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, &sa, metav1.CreateOptions{}); err != nil && !k8serrors.IsAlreadyExists(err) {
					require.NoError(t, err)
				}
			}
			for _, u := range objs {
				if u.GetKind() == "Namespace" {
					continue
				}
				gvr := mapper(u)
				var ri dynamic.ResourceInterface = dyn.Resource(gvr)
				if u.GetNamespace() != "" {
					ri = dyn.Resource(gvr).Namespace(u.GetNamespace())
				}
				_, err := ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
				if k8serrors.IsAlreadyExists(err) {
					continue // applied for real by the RBAC tests of this package
				}
				assert.NoError(t, err, "%s %s/%s admitted", u.GetKind(), u.GetNamespace(), u.GetName())
			}

			// PSA enforces on Pods, not Deployments: dry-run each template
			// as a Pod in the restricted namespace.
			for _, d := range deployments {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: d.Name + "-", Namespace: d.Namespace,
					Labels: d.Spec.Template.Labels}, Spec: d.Spec.Template.Spec}
				_, err := cs.CoreV1().Pods(d.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				assert.NoError(t, err, "%s's Pod passes Pod Security restricted", d.Name)
				for _, c := range d.Spec.Template.Spec.Containers {
					require.NotNil(t, c.SecurityContext)
					assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, "%s: read-only root", d.Name)
					assert.NotNil(t, c.Resources.Limits.Memory(), "%s: limits", d.Name)
					if d.Name != "airlock-worker" {
						assert.NotNil(t, c.ReadinessProbe, "%s: readiness probe", d.Name)
					}
					for _, e := range c.Env {
						if e.Name == "VAULT_TOKEN" || e.Name == "SLACK_SIGNING_SECRET" || e.Name == "AIRLOCK_CODEC_TOKEN" {
							assert.NotNil(t, e.ValueFrom, "%s: %s comes from a Secret", d.Name, e.Name)
						}
					}
				}
			}
		})
	}

	// A Pod that breaks "restricted" is refused in that namespace: the
	// check above can fail.
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: systemNS},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	_, err = cs.CoreV1().Pods(systemNS).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.Error(t, err)
	assert.True(t, k8serrors.IsForbidden(err), "PSA refuses it: %v", err)
}

// The catalog the cluster runs is deploy/catalog.yaml, byte for byte: the
// base generates its ConfigMap from a copy (kustomize reads no file above
// its directory) and this test is what keeps the copy from drifting. Every
// Pod that names a catalog in AIRLOCK_CATALOG has that file mounted from the
// generated ConfigMap (whose name kustomize suffixes with a content hash).
func TestKustomizeCatalogIsDeployCatalog(t *testing.T) {
	catalog, err := os.ReadFile("catalog.yaml")
	require.NoError(t, err)
	copied, err := os.ReadFile(filepath.Join("base", "catalog.yaml"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(catalog, copied), "deploy/base/catalog.yaml drifted from deploy/catalog.yaml: cp deploy/catalog.yaml deploy/base/catalog.yaml")

	for _, dir := range []string{"base", "overlays/dev"} {
		t.Run(dir, func(t *testing.T) {
			var cms []corev1.ConfigMap
			var deployments []appsv1.Deployment
			for _, u := range kustomize(t, dir) {
				switch u.GetKind() {
				case "ConfigMap":
					var cm corev1.ConfigMap
					require.NoError(t, runtimeFromUnstructured(u, &cm))
					cms = append(cms, cm)
				case "Deployment":
					var d appsv1.Deployment
					require.NoError(t, runtimeFromUnstructured(u, &d))
					deployments = append(deployments, d)
				}
			}
			require.Len(t, cms, 1, "one generated ConfigMap, the catalog")
			cm := cms[0]
			assert.Regexp(t, `^airlock-catalog-[a-z0-9]+$`, cm.Name, "content-hashed name: a new catalog rolls the Pods")
			assert.Equal(t, systemNS, cm.Namespace)
			assert.Equal(t, string(catalog), cm.Data["catalog.yaml"], "rendered catalog is deploy/catalog.yaml")

			mounted := map[string]bool{}
			for _, d := range deployments {
				vols := map[string]corev1.Volume{}
				for _, v := range d.Spec.Template.Spec.Volumes {
					vols[v.Name] = v
				}
				for _, c := range d.Spec.Template.Spec.Containers {
					for _, e := range c.Env {
						if e.Name != "AIRLOCK_CATALOG" {
							continue
						}
						for _, m := range c.VolumeMounts {
							v := vols[m.Name]
							if v.ConfigMap == nil || v.ConfigMap.Name != cm.Name || m.SubPath != "" {
								continue
							}
							for key := range cm.Data {
								path := key
								for _, it := range v.ConfigMap.Items {
									if it.Key == key {
										path = it.Path
									}
								}
								if m.MountPath+"/"+path == e.Value {
									mounted[d.Name] = true
								}
							}
						}
						assert.True(t, mounted[d.Name], "%s: AIRLOCK_CATALOG=%s is the generated catalog's mount", d.Name, e.Value)
					}
				}
			}
			assert.True(t, mounted["airlock-worker"], "the worker reads the catalog")
		})
	}
}

// ensureNamespace creates ns, or gives an existing one (other tests of this
// package create airlock-system) the labels.
func ensureNamespace(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ctx := t.Context()
	ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if k8serrors.IsNotFound(err) {
		_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
		require.NoError(t, err)
		return
	}
	require.NoError(t, err)
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	_, err = cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	require.NoError(t, err)
}

func runtimeFromUnstructured(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}

// restMapper maps kinds to resources by asking the apiserver.
func restMapper(cs kubernetes.Interface) *restmapper.DeferredDiscoveryRESTMapper {
	return restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
}
