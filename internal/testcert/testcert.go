// Package testcert makes throwaway certificates for tests' TLS over loopback: a
// certificate authority, and server and client certificates it signs. Keys are ECDSA
// P-256; certificates are valid from a minute ago for an hour.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// CA is a self-signed certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a certificate authority named name.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	tmpl := Template(1, name)
	tmpl.KeyUsage = x509.KeyUsageCertSign
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	der, key := SelfSigned(tb, tmpl)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{Cert: cert, key: key}
}

// PEM is the CA's certificate in PEM form.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Server signs a server certificate for name and the addresses ips, and returns it and
// its key in PEM form.
func (ca *CA) Server(tb testing.TB, name string, ips ...net.IP) (certPEM, keyPEM []byte) {
	tb.Helper()
	tmpl := Template(2, name)
	tmpl.IPAddresses = ips
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, key := ca.sign(tb, tmpl)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM(tb, key)
}

// Client signs a client certificate for name.
func (ca *CA) Client(tb testing.TB, name string) tls.Certificate {
	tb.Helper()
	tmpl := Template(2, name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, key := ca.sign(tb, tmpl)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *CA) sign(tb testing.TB, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
	tb.Helper()
	key := newKey(tb)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der, key
}

// Template is a certificate template with serial and common name, valid from a minute
// ago for an hour; the caller sets its usages.
func Template(serial int64, name string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
}

// SelfSigned signs tmpl with a new key of its own, and returns the certificate (DER) and
// the key.
func SelfSigned(tb testing.TB, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
	tb.Helper()
	key := newKey(tb)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return der, key
}

// KeyPEM is key in PEM form (SEC 1, "EC PRIVATE KEY").
func KeyPEM(tb testing.TB, key *ecdsa.PrivateKey) []byte {
	tb.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}
