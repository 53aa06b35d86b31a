package devstack

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// kubePKI is the certificates and keys of the control plane, as PEM and as
// files under <Dir>/pki.
type kubePKI struct {
	caCert, adminCert, adminKey []byte // PEM, for the kubeconfig

	caCertFile, caKeyFile           string
	servingCertFile, servingKeyFile string
	serviceAccountKeyFile           string
}

// writeKubePKI creates a CA, the apiserver's serving certificate, an admin
// client certificate in group system:masters and the service-account signing
// key. ECDSA keeps generation fast; the service-account key is RSA, which
// every token consumer accepts.
func writeKubePKI(dir string) (*kubePKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "airlock-devstack-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := sign(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	leaf := func(cn string, org []string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := sign(&x509.Certificate{
			Subject:     pkix.Name{CommonName: cn, Organization: org},
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.AddDate(10, 0, 0),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames:    dns,
			IPAddresses: ips,
		}, ca, key.Public(), caKey)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", cn, err)
		}
		keyPEM, err = keyToPEM(key)
		return pemBlock("CERTIFICATE", der), keyPEM, err
	}
	servingCert, servingKey, err := leaf("kube-apiserver", nil, x509.ExtKeyUsageServerAuth,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		// 10.0.0.1 is the kubernetes Service's IP in --service-cluster-ip-range.
		[]net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback, net.ParseIP("10.0.0.1")})
	if err != nil {
		return nil, err
	}
	adminCert, adminKey, err := leaf("airlock-admin", []string{"system:masters"}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := keyToPEM(saKey)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := keyToPEM(caKey)
	if err != nil {
		return nil, err
	}

	p := &kubePKI{
		caCert:                pemBlock("CERTIFICATE", caDER),
		adminCert:             adminCert,
		adminKey:              adminKey,
		caCertFile:            filepath.Join(dir, "ca.crt"),
		caKeyFile:             filepath.Join(dir, "ca.key"),
		servingCertFile:       filepath.Join(dir, "apiserver.crt"),
		servingKeyFile:        filepath.Join(dir, "apiserver.key"),
		serviceAccountKeyFile: filepath.Join(dir, "sa.key"),
	}
	files := map[string][]byte{
		p.caCertFile:                    p.caCert,
		p.caKeyFile:                     caKeyPEM,
		p.servingCertFile:               servingCert,
		p.servingKeyFile:                servingKey,
		p.serviceAccountKeyFile:         saKeyPEM,
		filepath.Join(dir, "admin.crt"): adminCert,
		filepath.Join(dir, "admin.key"): adminKey,
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func keyToPEM(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
