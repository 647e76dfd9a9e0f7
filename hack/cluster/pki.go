package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// pki is the cluster's one CA, in dir, and what it issues there.
type pki struct {
	dir    string
	cert   *x509.Certificate
	key    crypto.Signer
	server string // the API server's URL, for kubeconfigs
}

func newPKI(dir, server string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "friendgate-cluster-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, cert: cert, key: key, server: server}
	return p, p.write("ca", der, key)
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// write stores a certificate and its key as NAME.crt and NAME.key.
func (p *pki) write(name string, der []byte, key crypto.Signer) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.path(name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(p.path(name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// issue writes NAME.crt and NAME.key: a client certificate for user cn in groups orgs,
// or, with hosts, a serving certificate for those IP addresses and DNS names.
func (p *pki) issue(name, cn string, orgs []string, hosts ...string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(hosts) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	if err != nil {
		return err
	}
	return p.write(name, der, key)
}

// kubeconfig issues a client certificate for user cn in groups orgs and writes
// NAME.kubeconfig using it.
func (p *pki) kubeconfig(name, cn string, orgs ...string) error {
	if err := p.issue(name, cn, orgs); err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["friendgate"] = &clientcmdapi.Cluster{Server: p.server, CertificateAuthority: p.path("ca.crt")}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: p.path(name + ".crt"), ClientKey: p.path(name + ".key")}
	cfg.Contexts["friendgate"] = &clientcmdapi.Context{Cluster: "friendgate", AuthInfo: name}
	cfg.CurrentContext = "friendgate"
	return clientcmd.WriteToFile(*cfg, p.path(name+".kubeconfig"))
}

// serviceAccountKey writes the key pair the API server signs ServiceAccount tokens with.
func (p *pki) serviceAccountKey() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.path("sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(p.path("sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// issueAll writes everything the components need.
func (p *pki) issueAll(c *config) error {
	steps := []func() error{
		p.serviceAccountKey,
		func() error {
			return p.issue("apiserver", "kube-apiserver", nil,
				c.gateway().String(), c.apiServiceIP().String(),
				"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
		},
		func() error { return p.kubeconfig("admin", "friendgate-admin", "system:masters") },
		func() error { return p.kubeconfig("controller-manager", "system:kube-controller-manager") },
		func() error { return p.kubeconfig("scheduler", "system:kube-scheduler") },
		func() error { return p.kubeconfig("kubelet", "system:node:"+c.node, "system:nodes") },
		func() error { return p.kubeconfig("kube-proxy", "system:kube-proxy") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("certificates: %w", err)
		}
	}
	return nil
}
