package admission

import (
	"crypto/tls"

	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// DefaultPort is the default HTTPS port of the webhook server: controller-runtime's, which
// config/ and the chart expose.
const DefaultPort = 9443

// NewServer returns the webhook server to give the manager (manager.Options.WebhookServer)
// and then Setup with the same opts: HTTPS on port with the certificate of opts (in
// opts.CertDir, or with CertRotation the Secret, see Options.TLSOpts).
func NewServer(port int, opts Options) webhook.Server {
	return webhook.NewServer(webhook.Options{
		Port:    port,
		CertDir: opts.CertDir,
		TLSOpts: append([]func(*tls.Config){disableHTTP2}, opts.TLSOpts()...),
	})
}

// disableHTTP2 makes the webhook server speak HTTP/1.1 only, as kubebuilder's scaffolding
// does by default, against HTTP/2 Stream Cancellation and Rapid Reset (CVE-2023-44487,
// CVE-2023-39325). The API server's webhook client works over HTTP/1.1.
func disableHTTP2(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }
