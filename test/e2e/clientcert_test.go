package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a certificate authority that signs client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
}

// clientCert issues a client certificate.
func (ca *testCA) clientCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestClientCertificate requires a client certificate signed by a configured CA: real TLS
// clients with such a certificate are decided, those without one are refused with the
// protocol's answer, those with another CA's certificate fail the handshake, and probes
// need none.
func TestClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCert := writeCert(t, dir, 1)
	ca, other := newTestCA(t, "IM servers"), newTestCA(t, "someone else")
	writeFile(t, filepath.Join(dir, "client-ca.crt"), ca.pem())
	s := spawn(t, writePolicies(t, protocolPolicies),
		"--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-key-file", filepath.Join(dir, "tls.key"),
		"--tls-client-ca-file", filepath.Join(dir, "client-ca.crt"))
	t.Cleanup(func() { s.stop(t) })
	s.waitListening(t)

	trust := x509.NewCertPool()
	trust.AddCert(serverCert)
	// clientWith presents cert, if any, whatever CAs the server says it accepts.
	clientWith := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: trust}
		if cert != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	}
	good, bad := ca.clientCert(t, "openim"), other.clientCert(t, "openim")
	imServer, anonymous, impostor := clientWith(&good), clientWith(nil), clientWith(&bad)
	s.waitHTTPSReady(t, anonymous, "the server is ready, probed without a client certificate")

	openIM := openIMPath("callbackBeforeAddFriendCommand")
	tencent := tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd")
	const reason = "a client certificate signed by the configured CA is required"
	for _, c := range []struct {
		name         string
		client       *http.Client
		path, body   string
		status       int
		want         string
		handshakeErr bool
	}{
		{"OpenIM with the CA's certificate", imServer, openIM, openIMAddFriend("spam_1", "bob", "hi"), http.StatusOK, spammerDeny, false},
		{"Tencent with the CA's certificate", imServer, tencent, friendAdd("alice", "bob"), http.StatusOK, tencentResult(allowed("bob")), false},
		{"OpenIM without a certificate", anonymous, openIM, openIMAddFriend("alice", "bob", "hi"), http.StatusForbidden,
			openIMDeny(failureCode, failureMessage, "friendgate: "+reason), false},
		{"Tencent without a certificate", anonymous, tencent, friendAdd("alice", "bob"), http.StatusForbidden,
			tencentFail(http.StatusForbidden, reason), false},
		{"OpenIM with another CA's certificate", impostor, openIM, openIMAddFriend("alice", "bob", "hi"), 0, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, err := s.postHTTPS(c.client, c.path, c.body)
			if c.handshakeErr {
				if err == nil {
					t.Fatalf("got %d %s, want the TLS handshake refused", status, body)
				}
				return
			}
			if err != nil || status != c.status || body != c.want {
				t.Fatalf("got %d %s (%v), want %d %s", status, body, err, c.status, c.want)
			}
		})
	}
}
