package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
)

// DefaultMetricsAddr is where the callback replicas serve /metrics: a port of its own, so
// that a callback port exposed to the internet (Tencent calls from outside the cluster)
// does not expose the metrics too.
const DefaultMetricsAddr = ":9090"

// MetricsServer serves /metrics on an address of its own, over plain HTTP or TLS.
type MetricsServer struct {
	srv *http.Server
	ln  net.Listener
}

// ListenMetrics listens on addr for /metrics, answered by handler; with tlsConfig set,
// over TLS. It only listens, so that a taken port fails start-up; Serve serves.
func ListenMetrics(addr string, handler http.Handler, tlsConfig *tls.Config) (*MetricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for /metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", handler)
	return &MetricsServer{ln: ln, srv: &http.Server{
		TLSConfig:         tlsConfig,
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		// A scrape of a large registry may take a moment to write.
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    idleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
	}}, nil
}

// Serve serves until ctx is done, then closes the listener and waits up to a few seconds
// for a scrape in progress.
func (m *MetricsServer) Serve(ctx context.Context, log logr.Logger) error {
	tlsOn := m.srv.TLSConfig != nil
	log.Info("serving metrics", "addr", m.ln.Addr().String(), "tls", tlsOn)
	errc := make(chan error, 1)
	go func() {
		if tlsOn {
			errc <- m.srv.ServeTLS(m.ln, "", "")
		} else {
			errc <- m.srv.Serve(m.ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down the metrics server: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
