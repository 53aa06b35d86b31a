package devstack

// The real node: containerd + kubelet + a CNI bridge + kube-router's
// NetworkPolicy firewall on this machine, replacing kwok, so Jobs run real
// containers. It needs root on Linux and a few Debian packages
// (RealNodeSupported says which are missing).
//
// A node changes the host: sysctls (the kubelet sets vm.overcommit_memory,
// kernel.panic, kernel.panic_on_oops; the bridge sets net.ipv4.ip_forward),
// iptables rules and ipsets (the kubelet, kube-router and ours), a bridge,
// mounts, network namespaces, cgroups under /kubepods and a few fixed
// paths. Before it changes anything it records the host as it was in
// realNodeStateFile; teardown puts every one of those back, kills every
// shim and container the node started (by PID: SIGTERM, wait, SIGKILL) and
// removes the record. A run that died before its teardown leaves the
// record behind, and the next real node cleans up after it first.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Real node processes, for Pid, LogPath and StopProcess.
const (
	ProcContainerd = "containerd"
	ProcKubelet    = "kubelet"
	ProcKubeRouter = "kube-router"
)

// RealNodeName is the name the kubelet registers its node under.
const RealNodeName = "airlock-node-0"

// The Pod network: one bridge, one /24, this host at its first address.
const (
	PodCIDR        = "10.87.0.0/24"
	podGateway     = "10.87.0.1"
	podBridge      = "airlock0"
	cniBinDir      = "/usr/lib/cni"
	realNodeRunDir = "/run/airlock-realnode"
)

// realNodeLockWait bounds how long Start waits for another real node.
const realNodeLockWait = 15 * time.Minute

// realNodeStateFile records the host as it was before a real node changed it.
var realNodeStateFile = filepath.Join(realNodeRunDir, "state.json")

// fixedPaths are paths the kubelet, containerd and the CNI plugins use
// whatever they are told; those that did not exist before are removed.
var fixedPaths = []string{
	"/var/log/pods", "/var/log/containers", "/var/lib/kubelet", "/var/lib/cni",
	"/run/containerd", "/var/run/netns", "/run/netns", "/var/lib/containerd",
	"/opt/containerd", "/etc/cni", "/opt/cni", "/usr/libexec/kubernetes",
}

// touchedSysctls are the sysctls a node may change (kubelet, bridge,
// kube-router); teardown writes back the values they had.
var touchedSysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
	"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
	"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
}

// requiredTools are the host programs a real node runs.
var requiredTools = []string{
	"containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "iptables-save",
	"iptables-restore", "ip6tables-save", "ip6tables-restore", "ipset", "ip", "busybox",
}

// RealNodeSupported returns nil when this machine can run a real node, else
// why not: not Linux, not root, or missing packages (with their names).
func RealNodeSupported() error {
	if runtime.GOOS != "linux" {
		return errors.New("a real node needs Linux")
	}
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root")
	}
	var missing []string
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			missing = append(missing, cniBinDir+"/"+p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("a real node needs %s (Debian: containerd runc containernetworking-plugins iptables ipset conntrack iproute2 busybox-static)", strings.Join(missing, ", "))
	}
	return nil
}

// nodeState is the host as it was: what teardown restores.
type nodeState struct {
	Pid      int                            `json:"pid"`      // of the process that owns the node
	Dir      string                         `json:"dir"`      // the node's own directory
	Socket   string                         `json:"socket"`   // containerd's socket: identifies our shims
	Sysctls  map[string]string              `json:"sysctls"`  // name → value before
	Missing  []string                       `json:"missing"`  // fixed paths that did not exist
	Netns    []string                       `json:"netns"`    // /run/netns entries that existed
	Iptables map[string]map[string][]string `json:"iptables"` // "iptables"|"ip6tables" → table → lines of iptables-save
	Ipsets   []string                       `json:"ipsets"`
	Cgroups  []string                       `json:"cgroups"` // kubepods cgroup dirs that existed
}

// realNode is the host side of a real node.
type realNode struct {
	dir    string
	socket string
	lock   *os.File

	busyboxImage string
	pki          nodePKI

	mu     sync.Mutex
	relays []net.Listener
	wg     sync.WaitGroup
}

// nodePKI is the node's certificates: the kubelet's client certificate
// (system:node:<name>) and the apiserver's client certificate for kubelets.
type nodePKI struct {
	kubeletCert, kubeletKey     string
	apiClientCert, apiClientKey string
}

// prepareRealNode takes the machine-wide lock, cleans up after a real node
// that died without its teardown, records the host as it is, creates the
// Pod bridge and writes the node's certificates. Called before the
// apiserver starts: the apiserver's flags name the certificates.
func (s *Stack) prepareRealNode(ctx context.Context, pki *kubePKI) error {
	if err := RealNodeSupported(); err != nil {
		return err
	}
	lock, err := s.lockRealNode(ctx)
	if err != nil {
		return err
	}
	n := &realNode{dir: filepath.Join(s.Dir, "node"), lock: lock}
	n.socket = filepath.Join(n.dir, "containerd", "containerd.sock")
	s.node = n

	if b, err := os.ReadFile(realNodeStateFile); err == nil {
		var old nodeState
		if err := json.Unmarshal(b, &old); err != nil {
			return fmt.Errorf("read %s: %w", realNodeStateFile, err)
		}
		s.logf("devstack: a real node (pid %d) was not torn down; cleaning up after it", old.Pid)
		if err := restoreHost(old, s.logf); err != nil {
			return fmt.Errorf("clean up after an earlier real node: %w", err)
		}
	}
	if s.opts.hostReady != nil {
		s.opts.hostReady()
	}
	st, err := n.snapshot(os.Getpid())
	if err != nil {
		return fmt.Errorf("record host state: %w", err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.WriteFile(realNodeStateFile, b, 0o600); err != nil {
		return err
	}

	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pki", "volume-plugins", "opt"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return err
		}
	}
	// The bridge exists before anything starts: it carries the node's IP
	// (the kubelet refuses a loopback one) and Stack.PodHostIP.
	for _, args := range [][]string{
		{"link", "add", podBridge, "type", "bridge"},
		{"addr", "add", podGateway + "/24", "dev", podBridge},
		{"link", "set", podBridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	// Pods may reach this host and nothing else: whatever the Pods'
	// NetworkPolicies allow, forwarded traffic from the Pod network to any
	// other network is dropped (teardown removes the rule with the others).
	//
	// kube-router writes a Pod's rules a moment after the Pod starts, and
	// until then lets its traffic through. Traffic from the Pod network to
	// this host that its firewall did not accept (it jumps in first, at the
	// top of INPUT) is dropped: a Pod it has not programmed yet reaches
	// nothing, and TCP's retransmission finds the rules in place.
	for _, args := range [][]string{
		{"-I", "FORWARD", "1", "-s", PodCIDR, "!", "-d", PodCIDR,
			"-m", "comment", "--comment", "airlock real node: pods reach only this host", "-j", "DROP"},
		{"-A", "INPUT", "-i", podBridge, "-s", PodCIDR,
			"-m", "comment", "--comment", "airlock real node: nothing the pod firewall did not accept", "-j", "DROP"},
	} {
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	if n.pki, err = writeNodePKI(pki, filepath.Join(n.dir, "pki")); err != nil {
		return fmt.Errorf("node certificates: %w", err)
	}
	s.PodHostIP = podGateway
	return nil
}

// lockRealNode takes the machine-wide real-node lock, waiting for the node
// that holds it (e.g. another test package's) up to realNodeLockWait. The
// holder removes the lock file when it is done, so a lock taken on a file
// that is no longer at its path is let go and taken again.
func (s *Stack) lockRealNode(ctx context.Context) (*os.File, error) {
	ctx, cancel := context.WithTimeout(ctx, realNodeLockWait)
	defer cancel()
	path := filepath.Join(realNodeRunDir, "lock")
	logged := false
	for {
		if err := os.MkdirAll(realNodeRunDir, 0o700); err != nil {
			return nil, err
		}
		lock, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the holder removed the directory just now
		}
		if err != nil {
			return nil, err
		}
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			held, herr := lock.Stat()
			now, nerr := os.Stat(path)
			if herr == nil && nerr == nil && os.SameFile(held, now) {
				return lock, nil
			}
			lock.Close() // removed by the node that held it: take the new one
			continue
		}
		lock.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !logged {
			s.logf("devstack: another real node runs on this machine; waiting for it (lock %s)", path)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("another real node runs on this machine (lock %s): %w", path, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// realNodeAPIServerArgs are the apiserver flags a real node needs: a
// client certificate for kubelets and their InternalIP for logs and exec.
func (s *Stack) realNodeAPIServerArgs() []string {
	if s.node == nil {
		return nil
	}
	return []string{
		"--kubelet-client-certificate=" + s.node.pki.apiClientCert,
		"--kubelet-client-key=" + s.node.pki.apiClientKey,
		"--kubelet-preferred-address-types=InternalIP",
	}
}

// startRealNode starts containerd, imports the images, then kube-router and
// the kubelet, and waits for the node to be Ready.
func (s *Stack) startRealNode(ctx context.Context, cs kubernetes.Interface, pki *kubePKI) error {
	n := s.node
	s.NodeName = RealNodeName
	if err := n.writeContainerdConfig(); err != nil {
		return err
	}
	if err := s.launch(ctx, 0, func([]int) (*process, error) {
		p := s.newProcess(ProcContainerd, "containerd", "--config="+filepath.Join(n.dir, "containerd", "config.toml"))
		p.path = lookPath("containerd")
		p.ready = func(ctx context.Context) error { return n.ctr(ctx, nil, "version") }
		return p, nil
	}); err != nil {
		return err
	}
	begin := time.Now()
	if err := n.importImages(ctx); err != nil {
		return err
	}
	took := since(begin)
	s.mu.Lock()
	s.startTimes["node-images"] = took
	s.mu.Unlock()
	s.logf("devstack: node images imported in %s (%s)", took, n.busyboxImage)
	s.BusyboxImage = n.busyboxImage

	// The kubelet first: kube-router reads its node object at start.
	if err := s.launch(ctx, 2, func(ports []int) (*process, error) {
		cfg, err := n.writeKubeletConfig(pki, s.RestConfig.Host, ports[0], ports[1])
		if err != nil {
			return nil, err
		}
		p := s.newProcess(ProcKubelet, "kubelet",
			"--config="+cfg,
			"--kubeconfig="+filepath.Join(n.dir, "kubelet", "kubeconfig"),
			"--root-dir="+filepath.Join(n.dir, "kubelet", "root"),
			"--hostname-override="+RealNodeName,
			"--node-ip="+podGateway,
		)
		p.timeout = 90 * time.Second
		p.ready = func(ctx context.Context) error { return realNodeReady(ctx, cs) }
		return p, nil
	}); err != nil {
		return err
	}
	return s.launch(ctx, 1, func(ports []int) (*process, error) {
		p := s.newProcess(ProcKubeRouter, "kube-router",
			"--kubeconfig="+s.Kubeconfig,
			"--hostname-override="+RealNodeName,
			"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
			"--enable-cni=false", "--enable-ipv6=false",
			"--health-port="+strconv.Itoa(ports[0]), "--metrics-port=0",
			"--iptables-sync-period=1m",
		)
		p.ready = func(ctx context.Context) error {
			return httpOK(ctx, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/healthz", ports[0]))
		}
		return p, nil
	})
}

func lookPath(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// realNodeReady passes once the kubelet's node is Ready and untainted.
func realNodeReady(ctx context.Context, cs kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	node, err := cs.CoreV1().Nodes().Get(ctx, RealNodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			if len(node.Spec.Taints) > 0 {
				return fmt.Errorf("node %s still tainted %s", RealNodeName, node.Spec.Taints[0].Key)
			}
			return nil
		}
	}
	return fmt.Errorf("node %s not Ready yet", RealNodeName)
}

func (n *realNode) writeContainerdConfig() error {
	d := filepath.Join(n.dir, "containerd")
	cni := filepath.Join(n.dir, "cni")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.socket, n.socket+".ttrpc",
		filepath.Join(n.dir, "opt"), pauseImageRepo+":"+nodeImageTag, cniBinDir, filepath.Join(cni, "net.d"))
	if err := os.WriteFile(filepath.Join(d, "config.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	// No masquerading: Pods only ever talk to this host.
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "airlock",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": false,
    "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q, "gateway": %q}]]}
  }]
}
`, podBridge, filepath.Join(cni, "ipam"), PodCIDR, podGateway)
	return os.WriteFile(filepath.Join(cni, "net.d", "10-airlock.conflist"), []byte(conflist), 0o644)
}

// ctr runs ctr against the node's containerd in the k8s.io namespace.
func (n *realNode) ctr(ctx context.Context, stdin io.Reader, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.socket, "--namespace", "k8s.io"}, args...)...)
	cmd.Stdin = stdin
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr %s: %w: %s", args[0], err, bytes.TrimSpace(out))
	}
	return nil
}

// importImages builds the busybox and pause images and imports them, the
// busybox image also under its digest so Pods can pin it.
func (n *realNode) importImages(ctx context.Context) error {
	box, pause, err := nodeImages(lookPath("busybox"))
	if err != nil {
		return err
	}
	for _, im := range []struct {
		repo string
		img  ociImage
	}{{nodeImageRepo, box}, {pauseImageRepo, pause}} {
		if err := n.ctr(ctx, bytes.NewReader(im.img.archive), "images", "import", "--base-name", im.repo, "--digests", "-"); err != nil {
			return err
		}
	}
	n.busyboxImage = nodeImageRepo + "@" + box.digest
	return nil
}

func (n *realNode) writeKubeletConfig(pki *kubePKI, apiServer string, port, healthzPort int) (string, error) {
	d := filepath.Join(n.dir, "kubelet")
	if err := os.MkdirAll(filepath.Join(d, "root"), 0o755); err != nil {
		return "", err
	}
	// There is no cluster DNS here, and the host's resolver must not leak
	// into Pods: with no nameserver at all containerd would copy the host's
	// /etc/resolv.conf, so Pods get one that answers nothing (their own
	// loopback).
	resolv := filepath.Join(d, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		return "", err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["airlock-dev"] = &clientcmdapi.Cluster{Server: apiServer, CertificateAuthority: pki.caCertFile}
	cfg.AuthInfos["kubelet"] = &clientcmdapi.AuthInfo{ClientCertificate: n.pki.kubeletCert, ClientKey: n.pki.kubeletKey}
	cfg.Contexts["kubelet"] = &clientcmdapi.Context{Cluster: "airlock-dev", AuthInfo: "kubelet"}
	cfg.CurrentContext = "kubelet"
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(d, "kubeconfig")); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
resolvConf: %s
clusterDomain: cluster.local
volumePluginDir: %s
podPidsLimit: 256
maxPods: 60
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "50Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
serializeImagePulls: false
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
`, podGateway, port, healthzPort, n.socket, pki.caCertFile, resolv, filepath.Join(n.dir, "volume-plugins"))
	path := filepath.Join(d, "config.yaml")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// writeNodePKI issues, from the control plane's CA, the kubelet's client
// certificate and the apiserver's client certificate for kubelets.
func writeNodePKI(pki *kubePKI, dir string) (nodePKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nodePKI{}, err
	}
	caKeyPEM, err := os.ReadFile(pki.caKeyFile)
	if err != nil {
		return nodePKI{}, err
	}
	block, _ := pem.Decode(caKeyPEM)
	if block == nil {
		return nodePKI{}, errors.New("ca key: no PEM block")
	}
	caKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nodePKI{}, err
	}
	block, _ = pem.Decode(pki.caCert)
	if block == nil {
		return nodePKI{}, errors.New("ca cert: no PEM block")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nodePKI{}, err
	}
	signer, ok := caKey.(*ecdsa.PrivateKey)
	if !ok {
		return nodePKI{}, errors.New("ca key is not ECDSA")
	}
	issue := func(name, cn string, org []string) (string, string, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		now := time.Now()
		der, err := sign(&x509.Certificate{
			Subject:     pkix.Name{CommonName: cn, Organization: org},
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.AddDate(1, 0, 0),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, ca, key.Public(), signer)
		if err != nil {
			return "", "", err
		}
		keyPEM, err := keyToPEM(key)
		if err != nil {
			return "", "", err
		}
		certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		if err := os.WriteFile(certFile, pemBlock("CERTIFICATE", der), 0o600); err != nil {
			return "", "", err
		}
		return certFile, keyFile, os.WriteFile(keyFile, keyPEM, 0o600)
	}
	var p nodePKI
	if p.kubeletCert, p.kubeletKey, err = issue("kubelet", "system:node:"+RealNodeName, []string{"system:nodes"}); err != nil {
		return nodePKI{}, err
	}
	// system:masters: the kubelet authorizes the apiserver's requests by
	// SubjectAccessReview, and this is the control plane itself.
	if p.apiClientCert, p.apiClientKey, err = issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}); err != nil {
		return nodePKI{}, err
	}
	return p, nil
}

// ExposeToPods makes the loopback service at target (host:port) reachable
// from Pods at the returned address on this host's Pod-network IP, for as
// long as the stack runs: a Job's VAULT_ADDR must name an address its Pod
// can reach, and servers here listen on loopback only.
func (s *Stack) ExposeToPods(target string) (string, error) {
	n := s.node
	if n == nil {
		return "", errors.New("devstack: ExposeToPods needs a real node (Options.RealNode)")
	}
	l, err := net.Listen("tcp", net.JoinHostPort(podGateway, "0"))
	if err != nil {
		return "", fmt.Errorf("devstack: expose %s to pods: %w", target, err)
	}
	n.mu.Lock()
	n.relays = append(n.relays, l)
	n.mu.Unlock()
	n.wg.Go(func() {
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { relay(c, target) })
		}
	})
	return l.Addr().String(), nil
}

// relay copies between c and a new connection to target until either side closes.
func relay(c net.Conn, target string) {
	defer c.Close()
	t, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer t.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(t, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, t); done <- struct{}{} }()
	<-done
}

// ContainerPIDs returns the host PIDs of the processes in a container, by
// its id as the Pod status gives it ("containerd://<id>" or "<id>"): the
// processes of its cgroup under /kubepods. Empty once they are gone.
func ContainerPIDs(containerID string) ([]int, error) {
	_, id, _ := strings.Cut(containerID, "://")
	if id == "" {
		id = containerID
	}
	var pids []int
	for _, root := range kubepodsCgroups() {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() || !strings.Contains(d.Name(), id) {
				return nil
			}
			pids = append(pids, cgroupProcs(path)...)
			return nil
		})
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// ProcessAlive reports whether pid runs (a zombie does not).
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}
