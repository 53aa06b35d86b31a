// Package isolation proves, from inside running containers, the isolation
// Airlock promises (DESIGN invariant 11): every test runs a cycle through
// the real path — starter, a worker built as production builds it, Vault,
// the Job runtime — on a real node (containerd, kubelet, CNI bridge and
// kube-router enforcing NetworkPolicies; internal/devstack realnode.go),
// and the action's container attacks what it should not reach.
//
// It needs root on Linux and the packages .ci/run installs; elsewhere it
// skips and says why. In CI (CI set) a missing piece is a failure.
package isolation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"go.temporal.io/sdk/client"
	"k8s.io/client-go/kubernetes"

	"github.com/airlockhq/airlock/internal/devsetup"
	"github.com/airlockhq/airlock/internal/devstack"
	"github.com/airlockhq/airlock/k8s"
	"github.com/airlockhq/airlock/policy"
	"github.com/airlockhq/airlock/starter"
	"github.com/airlockhq/airlock/vault"
	"github.com/airlockhq/airlock/worker"
)

var env struct {
	skip         string // why the suite cannot run here
	stack        *devstack.Stack
	tc           client.Client
	starter      *starter.Client
	kube         kubernetes.Interface
	root         *vaultapi.Client
	catalog      *policy.Catalog
	broker       *vault.Broker // the worker's
	jobs         *k8s.Runner
	jobVaultAddr string

	vaultInPods string // host:port of Vault as Pods reach it
	allowed     int    // a port on PodHostIP the egress probe may reach
	other       int    // a port on the same host it may not
	secret      string // the value of the probe's own Vault secret
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if err := devstack.RealNodeSupported(); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "isolation: CI must run the real node:", err)
			return 1
		}
		env.skip = err.Error()
		return m.Run()
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "devstack: "+f+"\n", a...) }
	begin := time.Now()
	stack, err := devstack.Start(context.Background(), devstack.Options{Temporal: true, Vault: true, Kube: true, RealNode: true, Logf: logf})
	var missing *devstack.MissingBinaryError
	if errors.As(err, &missing) && os.Getenv("CI") == "" {
		env.skip = err.Error()
		return m.Run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolation:", err)
		return 1
	}
	defer func() {
		if err := stack.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "isolation:", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "isolation: real-node stack up in %s\n", time.Since(begin).Round(time.Millisecond))
	cleanup, err := setup(stack)
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolation: setup:", err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

func setup(stack *devstack.Stack) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env.stack = stack
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (func(), error) { cleanup(); return nil, err }
	var err error

	// Vault listens on loopback; Pods reach it through this host's Pod
	// network address, as they would reach a Vault Service on a cluster.
	vaultHost := strings.TrimPrefix(stack.VaultAddr, "http://")
	if env.vaultInPods, err = stack.ExposeToPods(vaultHost); err != nil {
		return fail(err)
	}
	// Two servers on the same host address: the probe may reach one.
	for _, port := range []*int{&env.allowed, &env.other} {
		l, err := net.Listen("tcp", net.JoinHostPort(stack.PodHostIP, "0"))
		if err != nil {
			return fail(err)
		}
		*port = l.Addr().(*net.TCPAddr).Port
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "reached port %d\n", *port)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(l) }()
		closers = append(closers, func() { _ = srv.Close() })
	}

	apiURL, err := url.Parse(stack.RestConfig.Host)
	if err != nil {
		return fail(err)
	}
	yaml := catalogYAML(stack.BusyboxImage, stack.PodHostIP, env.allowed, env.other, apiURL.Port())
	if env.catalog, err = policy.Parse("isolation catalog", []byte(yaml)); err != nil {
		return fail(err)
	}
	catPath := filepath.Join(stack.Dir, "catalog.yaml")
	if err := os.WriteFile(catPath, []byte(yaml), 0o600); err != nil {
		return fail(err)
	}
	if env.kube, err = kubernetes.NewForConfig(stack.RestConfig); err != nil {
		return fail(err)
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = stack.VaultAddr
	if env.root, err = vaultapi.NewClient(cfg); err != nil {
		return fail(err)
	}
	env.root.SetToken(stack.VaultToken)

	// The worker as production builds it; Jobs get the Vault address Pods
	// can reach, and nothing else tells the NetworkPolicy about it.
	wcfg := worker.Config{
		TemporalAddress: stack.TemporalAddress, VaultAddr: stack.VaultAddr, VaultToken: stack.VaultToken,
		Kubeconfig: stack.Kubeconfig, CatalogPath: catPath, JobVaultAddr: "http://" + env.vaultInPods,
		// Small enough that a probe outlives its first credential
		// (rotation_test.go); the probes' deadlines are minutes. The grace
		// exceeds the real node's Secret-volume refresh (syncFrequency 5s,
		// up to 1.5 × with jitter).
		CredentialMaxTTL: rotationMaxTTL, RotateAt: rotationRotateAt, RotationGrace: rotationGrace,
	}
	acts, closeActs, err := worker.NewActivities(ctx, wcfg)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, closeActs)
	env.broker, env.jobs, env.jobVaultAddr = acts.Broker, acts.Jobs, wcfg.JobVaultAddr
	if err := devsetup.Prepare(ctx, env.catalog, acts.Broker, acts.Jobs); err != nil {
		return fail(fmt.Errorf("prepare: %w", err))
	}
	env.secret = "probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := env.root.KVv2("secret").Put(ctx, "airlock/"+readPolicy+"/probe", map[string]any{"value": env.secret}); err != nil {
		return fail(err)
	}
	if _, err := env.root.KVv2("secret").Put(ctx, "airlock/"+otherPolicy+"/probe", map[string]any{"value": "not yours"}); err != nil {
		return fail(err)
	}
	if env.tc, err = worker.Dial(ctx, worker.ClientConfig{Address: stack.TemporalAddress}); err != nil {
		return fail(err)
	}
	closers = append(closers, env.tc.Close)
	w := worker.New(env.tc, wcfg, acts, nil)
	if err := w.Start(); err != nil {
		return fail(err)
	}
	closers = append(closers, w.Stop)
	signer, err := vault.NewSigner(vault.Config{Address: stack.VaultAddr, Token: stack.VaultToken})
	if err != nil {
		return fail(err)
	}
	env.starter = starter.New(env.tc, starter.WithCatalog(env.catalog), starter.WithSigner(signer))
	return cleanup, nil
}

// needNode skips a test when the suite cannot run on this machine.
func needNode(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skipf("no real node here: %s", env.skip)
	}
}
