package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/friendgate/friendgate/internal/testcert"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given serial number,
// as cert-manager would renew it: both files replaced in place.
func writeCert(t *testing.T, dir string, serial int64) *x509.Certificate {
	t.Helper()
	tmpl := testcert.Template(serial, "friendgate-e2e")
	tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	der, key := testcert.SelfSigned(t, tmpl)
	writeFile(t, filepath.Join(dir, "tls.key"), string(testcert.KeyPEM(t, key)))
	writeFile(t, filepath.Join(dir, "tls.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestTLS serves both protocols over HTTPS and picks up a renewed certificate without a
// restart.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := writeCert(t, dir, 1)
	s := spawn(t, writePolicies(t, protocolPolicies),
		"--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-key-file", filepath.Join(dir, "tls.key"))
	t.Cleanup(func() { s.stop(t) })
	s.waitListening(t)

	// trust holds the certificates the client accepts; the served one must be among them.
	trust := x509.NewCertPool()
	trust.AddCert(first)
	var served *x509.Certificate
	httpsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: trust,
		VerifyConnection: func(cs tls.ConnectionState) error {
			served = cs.PeerCertificates[0]
			return nil
		},
	}, DisableKeepAlives: true}}
	s.waitHTTPSReady(t, httpsClient, "the HTTPS server is ready")

	for _, c := range []struct{ path, body, want string }{
		{openIMPath("callbackBeforeAddFriendCommand"), openIMAddFriend("spam_1", "bob", "hi"), `"nextCode":1`},
		{tencentPath("1400000001", "Sns.CallbackPrevFriendAdd"), friendAdd("alice", "bob"), `"ResultCode":0`},
	} {
		status, body, err := s.postHTTPS(httpsClient, c.path, c.body)
		if err != nil || status != http.StatusOK || !strings.Contains(body, c.want) {
			t.Fatalf("POST https://%s%s: %d %s %v, want 200 with %s", s.addr, c.path, status, body, err, c.want)
		}
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + s.addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: %s, want 400", resp.Status)
		}
	}

	second := writeCert(t, dir, 2)
	trust.AddCert(second)
	s.eventually(t, 10*time.Second, "the renewed certificate is served", func() (bool, string) {
		if _, _, err := s.postHTTPS(httpsClient, openIMPath("callbackAfterAddFriendCommand"), "{}"); err != nil {
			return false, err.Error()
		}
		return served.SerialNumber.Int64() == 2, fmt.Sprintf("serial %d", served.SerialNumber)
	})
}

// postHTTPS posts a JSON body to the server over HTTPS with c.
func (s *server) postHTTPS(c *http.Client, path, body string) (int, string, error) {
	resp, err := c.Post("https://"+s.addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), err
}

// waitHTTPSReady waits until /readyz answers 200 over HTTPS with c.
func (s *server) waitHTTPSReady(t *testing.T, c *http.Client, what string) {
	t.Helper()
	s.eventually(t, startTimeout, what, func() (bool, string) {
		resp, err := c.Get("https://" + s.addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}
