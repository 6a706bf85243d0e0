package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// kubeletClientPKI is how kube-apiserver authenticates to kubelet, for
// `kubectl logs` and `exec`: a CA made for the run, kubelet's
// authentication.x509.clientCAFile, and a client certificate it signed,
// kube-apiserver's --kubelet-client-certificate and -key. kubelet accepts
// no one else (no anonymous access, no token review).
type kubeletClientPKI struct {
	CA, Cert, Key string // files
}

func writeKubeletClientPKI(dir string) (kubeletClientPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return kubeletClientPKI{}, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return kubeletClientPKI{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nri-image-verifier test kubelet client CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return kubeletClientPKI{}, fmt.Errorf("kubelet client CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return kubeletClientPKI{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return kubeletClientPKI{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return kubeletClientPKI{}, fmt.Errorf("kubelet client certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return kubeletClientPKI{}, err
	}
	p := kubeletClientPKI{
		CA:   filepath.Join(dir, "kubelet-client-ca.crt"),
		Cert: filepath.Join(dir, "apiserver-kubelet-client.crt"),
		Key:  filepath.Join(dir, "apiserver-kubelet-client.key"),
	}
	for file, block := range map[string]*pem.Block{
		p.CA:   {Type: "CERTIFICATE", Bytes: caDER},
		p.Cert: {Type: "CERTIFICATE", Bytes: der},
		p.Key:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			return kubeletClientPKI{}, err
		}
	}
	return p, nil
}
