package worker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/airlockhq/airlock/internal/devstack"
)

// stack is a Temporal dev server (plaintext gRPC) for the TLS tests, which
// put an mTLS-terminating proxy in front of it.
var stack *devstack.Stack

func TestMain(m *testing.M) {
	os.Exit(devstack.Main(m, devstack.Options{Temporal: true}, &stack))
}

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate it signed, and a second CA that signed nothing we serve.
type testPKI struct {
	caCert, otherCACert   string // paths
	clientCert, clientKey string
	serverCert            tls.Certificate
	caPool                *x509.CertPool
}

func writeTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	newCA := func(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		require.NoError(t, err)
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	leaf := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}
	ca, caKey, caPEM := newCA("airlock test CA")
	_, _, otherPEM := newCA("some other CA")
	serverPEM, serverKeyPEM := leaf(ca, caKey, 2, "temporal", x509.ExtKeyUsageServerAuth)
	clientPEM, clientKeyPEM := leaf(ca, caKey, 3, "airlock-worker", x509.ExtKeyUsageClientAuth)

	p := testPKI{
		caCert: filepath.Join(dir, "ca.pem"), otherCACert: filepath.Join(dir, "other-ca.pem"),
		clientCert: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client-key.pem"),
		caPool: x509.NewCertPool(),
	}
	for path, data := range map[string][]byte{
		p.caCert: caPEM, p.otherCACert: otherPEM, p.clientCert: clientPEM, p.clientKey: clientKeyPEM,
	} {
		require.NoError(t, os.WriteFile(path, data, 0o600))
	}
	var err error
	p.serverCert, err = tls.X509KeyPair(serverPEM, serverKeyPEM)
	require.NoError(t, err)
	p.caPool.AddCert(ca)
	return p
}

// tlsProxy terminates mTLS (client certificates required, signed by the test
// CA) and passes the bytes to a plaintext backend: what a TLS-fronted
// Temporal looks like to a client.
type tlsProxy struct {
	ln         net.Listener
	handshakes atomic.Int64 // completed, client certificate verified
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      map[net.Conn]struct{}
}

func startTLSProxy(t *testing.T, backend string, p testPKI) *tlsProxy {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{p.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.caPool,
		NextProtos:   []string{"h2"}, // gRPC insists on ALPN h2
		MinVersion:   tls.VersionTLS12,
	})
	require.NoError(t, err)
	px := &tlsProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	px.wg.Add(1)
	go func() {
		defer px.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Cleanup
			}
			px.wg.Add(1)
			go func() {
				defer px.wg.Done()
				px.serve(c.(*tls.Conn), backend)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		px.mu.Lock()
		for c := range px.conns {
			_ = c.Close()
		}
		px.conns = nil // later connections close at once
		px.mu.Unlock()
		px.wg.Wait()
	})
	return px
}

func (px *tlsProxy) track(c net.Conn) bool {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.conns == nil {
		return false
	}
	px.conns[c] = struct{}{}
	return true
}

func (px *tlsProxy) serve(front *tls.Conn, backend string) {
	defer front.Close()
	if !px.track(front) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := front.HandshakeContext(ctx); err != nil {
		return // wrong CA, no client certificate: the client sees the alert
	}
	px.handshakes.Add(1)
	back, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer back.Close()
	if !px.track(back) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(back, front); done <- struct{}{} }()
	go func() { _, _ = io.Copy(front, back); done <- struct{}{} }()
	<-done // either side closing ends both
}

func (px *tlsProxy) addr() string { return px.ln.Addr().String() }

func echoWorkflow(ctx workflow.Context, s string) (string, error) { return "tls:" + s, nil }

// Through an mTLS-terminating proxy, configured only by TEMPORAL_TLS_*
// variables, Dial reaches Temporal and a workflow runs end to end; with the
// wrong CA, or without a client certificate, it fails within its deadline
// and says why.
func TestDialMutualTLS(t *testing.T) {
	pki := writeTestPKI(t, t.TempDir())
	px := startTLSProxy(t, stack.TemporalAddress, pki)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Run("client certificate and the right CA", func(t *testing.T) {
		isolateTemporalEnv(t)
		t.Setenv(EnvTemporalAddress, px.addr())
		t.Setenv(EnvTemporalTLSCert, pki.clientCert)
		t.Setenv(EnvTemporalTLSKey, pki.clientKey)
		t.Setenv(EnvTemporalTLSCA, pki.caCert)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()

		c, err := Dial(ctx, ClientConfig{Logger: logger})
		require.NoError(t, err)
		defer c.Close()
		assert.Positive(t, px.handshakes.Load(), "the connection went through the proxy")

		ns, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		require.NoError(t, err)
		assert.Equal(t, "default", ns.GetNamespaceInfo().GetName())

		queue := "tls-" + t.Name()
		w := sdkworker.New(c, queue, sdkworker.Options{})
		w.RegisterWorkflow(echoWorkflow)
		require.NoError(t, w.Start())
		defer w.Stop()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: queue}, echoWorkflow, "hello")
		require.NoError(t, err)
		var got string
		require.NoError(t, run.Get(ctx, &got))
		assert.Equal(t, "tls:hello", got)
	})

	failures := map[string]struct {
		env     map[string]string
		wantErr string
	}{
		"server certificate from an unknown CA": {
			env:     map[string]string{EnvTemporalTLSCert: pki.clientCert, EnvTemporalTLSKey: pki.clientKey, EnvTemporalTLSCA: pki.otherCACert},
			wantErr: "certificate signed by unknown authority",
		},
		// Under TLS 1.3 the server refuses a missing certificate after the
		// client's handshake: the client reads "certificate required" or
		// hits the closed socket first ("broken pipe"), whichever wins.
		"no client certificate": {
			env: map[string]string{EnvTemporalTLSCA: pki.caCert},
		},
	}
	for name, tc := range failures {
		t.Run(name, func(t *testing.T) {
			isolateTemporalEnv(t)
			t.Setenv(EnvTemporalAddress, px.addr())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			const bound = 10 * time.Second
			ctx, cancel := context.WithTimeout(t.Context(), bound)
			defer cancel()
			start, before := time.Now(), px.handshakes.Load()
			c, err := Dial(ctx, ClientConfig{Logger: logger})
			if c != nil {
				c.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.Equal(t, before, px.handshakes.Load(), "no byte reached Temporal")
			assert.False(t, errors.Is(err, context.DeadlineExceeded), "failed by timing out: %v", err)
			assert.Less(t, time.Since(start), bound/2, "a handshake failure is not retried until the deadline")
			t.Logf("%s after %s", err, time.Since(start).Round(time.Millisecond))
		})
	}
}
