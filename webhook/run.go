package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// ServerOptions configure the HTTP server that carries the callbacks.
type ServerOptions struct {
	// Addr is the listen address, such as :8080.
	Addr string
	// CertFile and KeyFile enable TLS; both files are reread when they change, so a
	// rotated certificate (cert-manager, a renewed Secret) is served without a restart.
	CertFile, KeyFile string
	// ClientCAs, when set, verifies the certificates clients present; whether a callback
	// must present one is the Handler's RequireClientCert. It is read at each handshake,
	// so a reloaded CA applies to new connections at once.
	ClientCAs *ClientCAs
	// DrainPeriod is how long the server keeps serving after ctx is done, answering every
	// request with Connection: close so that clients drop their keep-alive connections
	// themselves. Closing an idle keep-alive connection from the server races with a
	// client sending on it, and a client does not retry a POST that met a closed
	// connection: an IM server would see the callback fail. Zero shuts down at once.
	DrainPeriod time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests after the drain.
	ShutdownTimeout time.Duration
	// MaxConnections bounds the connections served at once (see connLimiter); 0 means
	// DefaultMaxConnections.
	MaxConnections int
	// Metrics count the connections; they must be the handler's.
	Metrics *Metrics
	// Ready, when set, is called with the bound address once the server is listening.
	Ready func(addr net.Addr)
}

// Timeouts of the callback server. The IM servers give up after 2 s (Tencent) or 5 s
// (OpenIM's shipped config), so a request that takes longer has already failed; the limits
// stop slow or stuck clients from holding connections and goroutines.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 90 * time.Second
	maxHeaderBytes    = 64 << 10
)

// DefaultDrainPeriod is the servers' DrainPeriod: under load, every keep-alive connection
// carries a request within it.
const DefaultDrainPeriod = 2 * time.Second

// ListenAndServe serves handler until ctx is done, then shuts down gracefully: for
// DrainPeriod it goes on serving and asks clients to close their connections, then the
// listener closes and in-flight requests get up to ShutdownTimeout to finish.
func ListenAndServe(ctx context.Context, log logr.Logger, handler http.Handler, opts ServerOptions) error {
	var draining atomic.Bool
	dates := newDateHeader(clock.RealClock{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hdr := w.Header()
			hdr["Date"] = dates.get()
			if draining.Load() {
				hdr.Set("Connection", "close")
			}
			handler.ServeHTTP(w, r)
		}),
		MaxHeaderBytes: maxHeaderBytes,
		ConnState:      connState,
		ConnContext:    connContext,
		// Connection-level errors (TLS handshakes, malformed requests) go to the
		// structured log too, not to the standard logger's plain stderr lines.
		ErrorLog: stdlog.New(logWriter{log.WithName("http")}, "", 0),
	}
	tlsOn := opts.CertFile != "" || opts.KeyFile != ""
	if tlsOn {
		if opts.CertFile == "" || opts.KeyFile == "" {
			return errors.New("TLS needs both a certificate file and a key file")
		}
		cw, err := certwatcher.New(opts.CertFile, opts.KeyFile)
		if err != nil {
			return fmt.Errorf("loading the TLS certificate: %w", err)
		}
		go func() {
			if err := cw.Start(ctx); err != nil {
				log.Error(err, "watching the TLS certificate failed; the loaded one stays in use")
			}
		}()
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cw.GetCertificate}
		if cas := opts.ClientCAs; cas != nil {
			// A presented certificate must verify; a missing one is refused by the handler
			// on the callback paths only, so that probes and scrapes need none.
			base := srv.TLSConfig
			srv.TLSConfig = &tls.Config{
				MinVersion:     tls.VersionTLS12,
				GetCertificate: cw.GetCertificate,
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
					c := base.Clone()
					c.ClientAuth = tls.VerifyClientCertIfGiven
					c.ClientCAs = cas.pool.Load()
					return c, nil
				},
			}
		}
	}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return err
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	limiter := newConnLimiter(ln, opts.MaxConnections, opts.Metrics)
	timeouts := connTimeouts{header: readHeaderTimeout, request: readTimeout, answer: writeTimeout, idle: idleTimeout}
	if tlsOn {
		srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = timeouts.header, timeouts.request, timeouts.answer, timeouts.idle
	} else {
		limiter.timeouts = timeouts
	}
	lctx, stopLimiter := context.WithCancel(context.Background())
	defer stopLimiter()
	go limiter.run(lctx)
	go dates.run(lctx)
	ln = limiter
	if opts.Ready != nil {
		opts.Ready(ln.Addr())
	}
	log.Info("serving callbacks", "addr", ln.Addr().String(), "tls", tlsOn)

	errc := make(chan error, 1)
	go func() {
		if tlsOn {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if opts.DrainPeriod > 0 {
		log.Info("draining: asking clients to close their connections", "period", opts.DrainPeriod.String())
		draining.Store(true)
		select {
		case err := <-errc:
			return err
		case <-time.After(opts.DrainPeriod):
		}
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", opts.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ClientCAs is a pool of CA certificates read from a PEM file, replaced whole by Load.
type ClientCAs struct {
	file string
	pool atomic.Pointer[x509.CertPool]
}

// NewClientCAs reads the CA certificates of file.
func NewClientCAs(file string) (*ClientCAs, error) {
	c := &ClientCAs{file: file}
	if err := c.Load(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load rereads the file; on failure the previous pool stays in force.
func (c *ClientCAs) Load() error {
	data, err := os.ReadFile(c.file)
	if err != nil {
		return fmt.Errorf("reading client CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("reading client CA certificates: %s holds no PEM certificate", c.file)
	}
	c.pool.Store(pool)
	return nil
}

// logWriter turns the lines net/http writes to its ErrorLog into log entries.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
