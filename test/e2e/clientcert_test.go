package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/testcert"
)

// TestClientCertificate requires a client certificate signed by a configured CA: real TLS
// clients with such a certificate are decided, those without one are refused with the
// protocol's answer, those with another CA's certificate fail the handshake, and probes
// need none.
func TestClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCert := writeCert(t, dir, 1)
	ca, other := testcert.NewCA(t, "IM servers"), testcert.NewCA(t, "someone else")
	writeFile(t, filepath.Join(dir, "client-ca.crt"), string(ca.PEM()))
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
	good, bad := ca.Client(t, "openim"), other.Client(t, "openim")
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
