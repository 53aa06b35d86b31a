package devstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultNodeName is the name of the kwok node.
const DefaultNodeName = "kwok-node-0"

// startKube starts etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok in that order, each once the one before is ready,
// then waits for the kwok node to be Ready.
func (s *Stack) startKube(ctx context.Context) error {
	pki, err := writeKubePKI(filepath.Join(s.Dir, "pki"))
	if err != nil {
		return fmt.Errorf("start kubernetes: create certificates: %w", err)
	}
	s.NodeName = DefaultNodeName
	if s.opts.RealNode {
		if err := s.prepareRealNode(ctx, pki); err != nil {
			return fmt.Errorf("start real node: %w", err)
		}
	}

	var etcdURL string
	if err := s.launch(ctx, 2, func(ports []int) (*process, error) {
		etcdURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		return s.etcdProcess(etcdURL, fmt.Sprintf("http://127.0.0.1:%d", ports[1])), nil
	}); err != nil {
		return err
	}

	// cs reaches the apiserver; its port, and so the kubeconfig, is known
	// once the apiserver runs.
	var cs kubernetes.Interface
	if err := s.launch(ctx, 1, func(ports []int) (*process, error) {
		if err := s.writeKubeconfig(fmt.Sprintf("https://127.0.0.1:%d", ports[0]), pki); err != nil {
			return nil, fmt.Errorf("start kubernetes: %w", err)
		}
		var err error
		if cs, err = kubernetes.NewForConfig(s.RestConfig); err != nil {
			return nil, fmt.Errorf("start kubernetes: %w", err)
		}
		auditArgs, err := s.kubeAuditArgs()
		if err != nil {
			return nil, fmt.Errorf("start kubernetes: %w", err)
		}
		return s.apiServerProcess(ports[0], etcdURL, pki, cs, auditArgs), nil
	}); err != nil {
		return err
	}

	// The controller manager and scheduler serve /healthz with self-signed
	// certificates; only loopback is involved.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := s.launch(ctx, 1, func(ports []int) (*process, error) {
		kcmPort := ports[0]
		kcm := s.newProcess(ProcKubeControllerManager, "kube-controller-manager",
			"--kubeconfig="+s.Kubeconfig,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port="+strconv.Itoa(kcmPort),
			"--cert-dir="+filepath.Join(s.Dir, "kube-controller-manager"),
			"--controllers=*",
			"--use-service-account-credentials=false",
			"--service-account-private-key-file="+pki.serviceAccountKeyFile,
			"--root-ca-file="+pki.caCertFile,
			"--cluster-signing-cert-file="+pki.caCertFile,
			"--cluster-signing-key-file="+pki.caKeyFile,
			"--kube-api-qps=100", "--kube-api-burst=200",
			"--profiling=false",
		)
		kcm.ready = func(ctx context.Context) error {
			if err := httpOK(ctx, insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort)); err != nil {
				return err
			}
			// Pods are rejected until their namespace's default ServiceAccount
			// exists; its presence in "default" shows the controllers run.
			_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
			return err
		}
		return kcm, nil
	}); err != nil {
		return err
	}

	if err := s.launch(ctx, 1, func(ports []int) (*process, error) {
		schedPort := ports[0]
		sched := s.newProcess(ProcKubeScheduler, "kube-scheduler",
			"--kubeconfig="+s.Kubeconfig,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port="+strconv.Itoa(schedPort),
			"--cert-dir="+filepath.Join(s.Dir, "kube-scheduler"),
			"--profiling=false",
		)
		sched.ready = func(ctx context.Context) error {
			return httpOK(ctx, insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", schedPort))
		}
		return sched, nil
	}); err != nil {
		return err
	}

	if s.opts.RealNode {
		return s.startRealNode(ctx, cs, pki)
	}
	// kwok listens on no port.
	return s.launch(ctx, 0, func([]int) (*process, error) {
		kwokArgs, err := writeKwokConfig(filepath.Join(s.Dir, "kwok"))
		if err != nil {
			return nil, fmt.Errorf("start kwok: %w", err)
		}
		kwok := s.newProcess(ProcKwok, "kwok", append([]string{"--kubeconfig=" + s.Kubeconfig}, kwokArgs...)...)
		kwok.ready = func(ctx context.Context) error { return nodeReady(ctx, cs, s.NodeName) }
		return kwok, nil
	})
}

// etcdProcess is etcd serving clients on clientURL and peers on peerURL.
func (s *Stack) etcdProcess(clientURL, peerURL string) *process {
	etcd := s.newProcess(ProcEtcd, "etcd",
		"--name=default",
		"--data-dir="+filepath.Join(s.Dir, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--quota-backend-bytes="+strconv.Itoa(4<<30),
		// Test data is disposable; fsync dominates write latency otherwise.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	// With clients connected etcd waits ≈7 s for their watch streams before
	// it exits. Killing it sooner loses nothing: every write it acknowledged
	// is in its WAL, in the page cache.
	etcd.grace = 2 * time.Second
	etcd.ready = func(ctx context.Context) error { return httpOK(ctx, http.DefaultClient, clientURL+"/health") }
	return etcd
}

// apiServerProcess is kube-apiserver serving on port, storing in etcdURL.
func (s *Stack) apiServerProcess(port int, etcdURL string, pki *kubePKI, cs kubernetes.Interface, auditArgs []string) *process {
	api := s.newProcess(ProcKubeAPIServer, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--advertise-address=127.0.0.1",
		"--cert-dir="+filepath.Join(s.Dir, "kube-apiserver"),
		"--tls-cert-file="+pki.servingCertFile,
		"--tls-private-key-file="+pki.servingKeyFile,
		"--client-ca-file="+pki.caCertFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.serviceAccountKeyFile,
		"--service-account-signing-key-file="+pki.serviceAccountKeyFile,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		// The default admission plugins stay on, PodSecurity among them.
		// Privileged containers are allowed cluster-wide, as on real
		// clusters, so that PodSecurity is what rejects them: with
		// --allow-privileged=false validation would refuse them first and
		// hide a namespace that lacks its pod-security labels.
		"--allow-privileged=true",
		// Priority and fairness adds start-up work and queues nothing useful
		// for a single-user test cluster.
		"--enable-priority-and-fairness=false",
		// The kubernetes Service cannot have a loopback endpoint; without
		// this the apiserver logs an error every few seconds.
		"--endpoint-reconciler-type=none",
		// Without a bound, SIGTERM waits for clients' watches to end, i.e.
		// forever while the controller manager runs (StopProcess).
		"--shutdown-watch-termination-grace-period=1s",
		"--profiling=false",
	)
	api.args = append(api.args, s.realNodeAPIServerArgs()...)
	api.args = append(api.args, auditArgs...)
	api.ready = func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("readyz: %w: %s", err, body)
		}
		return nil
	}
	return api
}

// writeKubeconfig writes the admin kubeconfig and sets Kubeconfig and RestConfig.
func (s *Stack) writeKubeconfig(server string, pki *kubePKI) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["airlock-dev"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: pki.caCert}
	cfg.AuthInfos["airlock-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: pki.adminCert, ClientKeyData: pki.adminKey}
	cfg.Contexts["airlock-dev"] = &clientcmdapi.Context{Cluster: "airlock-dev", AuthInfo: "airlock-admin"}
	cfg.CurrentContext = "airlock-dev"
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, s.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("build rest config: %w", err)
	}
	// client-go's default of 5 requests/s throttles tests that poll.
	rc.QPS, rc.Burst = 100, 200
	s.RestConfig = rc
	return nil
}

// nodeReady creates the kwok node unless it exists and passes once it is
// Ready and untainted. TaintNodesByCondition taints a new node not-ready;
// the controller manager lifts the taint once kwok reports Ready, and only
// then does the scheduler place Pods on it.
func nodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if k8serrors.IsNotFound(err) {
		node, err = cs.CoreV1().Nodes().Create(ctx, kwokNode(name), metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			if len(node.Spec.Taints) > 0 {
				return fmt.Errorf("node %s still tainted %s", name, node.Spec.Taints[0].Key)
			}
			return nil
		}
	}
	return errors.New("node " + name + " not Ready yet")
}

// kwokNode is the fake node. kwok manages it because of the annotation; its
// status (capacity, conditions) is kept by kwok's node stages.
func kwokNode(name string) *corev1.Node {
	// Simulated, so sized for load tests: the node must never be what
	// limits hundreds of concurrent Jobs (agent namespaces' quotas are).
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("256"),
		corev1.ResourceMemory: resource.MustParse("1Ti"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{Capacity: resources, Allocatable: resources},
	}
}
