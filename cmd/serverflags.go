package cmd

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	certutil "k8s.io/client-go/util/cert"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/friendgate/friendgate/internal/dirwatch"
	"github.com/friendgate/friendgate/internal/velocity"
	"github.com/friendgate/friendgate/webhook"
)

// callbackFlags are the settings of the callback server, shared by `serve` and `webhook`.
type callbackFlags struct {
	addr             string
	metricsAddr      string
	metricsSecure    bool
	failurePolicy    string
	clientDetail     string
	maxBodyBytes     int64
	maxInflightBytes int64
	maxBatchBytes    int64
	maxBatchItems    int
	tooLargePolicy   string
	maxConnections   int
	tencentTokensDir string
	tencentMaxSkew   time.Duration
	openIMCIDRs      []string
	upstreamURL      string
	upstreamTimeout  time.Duration
	upstreamFriend   bool
	upstreamFailure  string
	tlsCertFile      string
	tlsKeyFile       string
	tlsClientCAFile  string
	logAllowEvery    uint64
	shutdownTimeout  time.Duration
	gcMinHeadroom    int64
	redis            redisFlags
}

// redisFlags are the flags of the Redis the webhook replicas share limit counters
// through; redisConfig validates them.
type redisFlags struct {
	addr          string
	username      string
	passwordFile  string
	db            int
	keyPrefix     string
	tls           bool
	tlsCAFile     string
	tlsServerName string
	budget        time.Duration
}

func (f *callbackFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "addr", ":8080", "address serving the callbacks (/openim, /tencent), /healthz and /readyz")
	fs.StringVar(&f.failurePolicy, "failure-policy", string(webhook.FailAllow),
		"answer to a request that cannot be decided (malformed, unroutable, policies not loaded, server busy): Allow or Deny; see --too-large-policy for oversized ones. Tencent reads it only for requests whose items were read; others get ActionStatus FAIL and its console's setting")
	fs.StringVar(&f.clientDetail, "client-detail", string(webhook.DetailReference),
		"what an OpenIM denial's errDlt, which OpenIM shows the refused user's app, reveals: Reference (an opaque reference, logged with the deciding policy or the reason a request was not decided), None, or Full (namespace/name/kind/entry of the deciding policy, or the reason)")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", webhook.DefaultMaxBodyBytes, "largest callback body accepted; larger ones get 413")
	fs.Int64Var(&f.maxBatchBytes, "max-batch-body-bytes", webhook.DefaultMaxBatchBodyBytes,
		"largest body of a batch callback (OpenIM callbackBeforeImportFriendsCommand, Tencent Sns.CallbackPrevFriendAdd and Sns.CallbackPrevFriendResponse); larger ones get 413")
	fs.IntVar(&f.maxBatchItems, "max-batch-items", webhook.DefaultMaxBatchItems,
		"most friend IDs of an OpenIM import, and most items of a Tencent batch, decided in one callback; more get 413")
	fs.StringVar(&f.tooLargePolicy, "too-large-policy", string(webhook.FailDeny),
		"answer to a callback over a size bound (--max-body-bytes, --max-batch-body-bytes, --max-batch-items, a user ID over 1 KiB): Deny, or Allow to let its whole batch through unchecked")
	fs.Int64Var(&f.maxInflightBytes, "max-inflight-body-bytes", webhook.DefaultMaxInflightBodyBytes,
		"most body bytes held at once over all callbacks, reserved as they arrive; a callback that would exceed it gets 503 and the failure policy's answer")
	fs.IntVar(&f.maxConnections, "max-connections", webhook.DefaultMaxConnections,
		"most connections served at once; at the limit the longest-idle keep-alive connection is closed, else a new one gets 503 and the failure policy's answer (and beyond an eighth more, is closed at once)")
	fs.StringVar(&f.tencentTokensDir, "tencent-tokens-dir", "",
		"directory with one file per Tencent SdkAppid holding its callback token (a mounted Secret); reread on change. "+
			"When set, other SdkAppids get 403 and apps with a token must sign their callbacks. Empty accepts every app unsigned")
	fs.DurationVar(&f.tencentMaxSkew, "tencent-max-clock-skew", time.Minute, "largest difference between a Tencent RequestTime and now")
	fs.StringSliceVar(&f.openIMCIDRs, "openim-allowed-cidrs", nil,
		"client CIDRs OpenIM callbacks are accepted from (comma-separated); others get 403. Empty accepts every client")
	fs.StringVar(&f.upstreamURL, "openim-upstream", "",
		"an existing OpenIM webhook backend (its webhook URL, http(s)://host[:port][/path]): OpenIM callbacks friendgate does not decide are forwarded to URL/<command> and its answer relayed. Empty: they get continue")
	fs.DurationVar(&f.upstreamTimeout, "openim-upstream-timeout", webhook.DefaultUpstreamTimeout, "how long a forwarded callback may take")
	fs.BoolVar(&f.upstreamFriend, "openim-upstream-friend-commands", false,
		"also forward the friend callbacks friendgate allows (except partly refused imports) and relay the upstream's answer, so the backend keeps its say")
	fs.StringVar(&f.upstreamFailure, "openim-upstream-failure-policy", string(webhook.FailDeny),
		"answer when the upstream does not answer (error, timeout, non-2xx, not JSON): Deny, as OpenIM does when its backend fails, or Allow")
	fs.StringVar(&f.tlsCertFile, "tls-cert-file", "", "serve TLS with this certificate (PEM), reloaded when it changes")
	fs.StringVar(&f.tlsKeyFile, "tls-key-file", "", "private key (PEM) of --tls-cert-file")
	fs.StringVar(&f.tlsClientCAFile, "tls-client-ca-file", "",
		"CA certificates (PEM) that must have signed a client certificate presented with every callback (TLS only; probes and /metrics need none); reread when it changes")
	fs.Uint64Var(&f.logAllowEvery, "log-allow-every", 0, "log one allowed request item in every N (0: none); denials are always logged")
	fs.Int64Var(&f.gcMinHeadroom, "gc-min-headroom", defaultGCMinHeadroom,
		"least heap growth, in bytes, the garbage collector allows above the live data (the policies) before it collects; with a small policy set Go's default (the live data's size again) means a collection, which rescans every policy, each few megabytes of callbacks. 0 keeps Go's default; GOGC, when set, wins")
	fs.StringVar(&f.redis.addr, "redis-addr", "",
		"host:port of a Redis the webhook replicas share policies' limit counters through, e.g. OpenIM's own (keys start with --redis-key-prefix). "+
			"Empty: limits are counted in memory in this process only, so with more than one webhook replica each counts alone")
	fs.StringVar(&f.redis.username, "redis-username", "", "Redis ACL user; empty: the default user")
	fs.StringVar(&f.redis.passwordFile, "redis-password-file", "",
		"file holding the Redis password (e.g. a mounted Secret; a trailing newline is trimmed); empty: no password")
	fs.IntVar(&f.redis.db, "redis-db", 0, "Redis database number; 0 is Redis's default (and the only one a Redis Cluster has)")
	fs.StringVar(&f.redis.keyPrefix, "redis-key-prefix", defaultRedisKeyPrefix,
		"prefix of every Redis key friendgate writes (at most 64 bytes), so it can share a Redis with OpenIM or other friendgate installations")
	fs.BoolVar(&f.redis.tls, "redis-tls", false, "connect to Redis over TLS (1.2 or later); false: plain TCP")
	fs.StringVar(&f.redis.tlsCAFile, "redis-tls-ca-file", "", "CA certificates (PEM) that verify Redis's certificate (with --redis-tls); empty: the system's roots")
	fs.StringVar(&f.redis.tlsServerName, "redis-tls-server-name", "", "name Redis's certificate must have (with --redis-tls); empty: the host of --redis-addr")
	fs.DurationVar(&f.redis.budget, "redis-budget", defaultRedisBudget,
		"longest a callback waits on Redis to count a limit (100µs to 1s); past it the request is counted in this process's memory")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 15*time.Second, fmt.Sprintf("how long in-flight requests may take to finish after SIGTERM and a %s drain, in which answers ask clients to close their keep-alive connections", webhook.DefaultDrainPeriod))
}

// bindMetrics binds --metrics-bind-address. `run` binds the controller's flag of that
// name instead and hands its value over.
func (f *callbackFlags) bindMetrics(fs *pflag.FlagSet) {
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", webhook.DefaultMetricsAddr,
		`address of the Prometheus /metrics endpoint, apart from the callback port so that exposing the callbacks does not expose the metrics; plain HTTP unless --metrics-secure (webhook and run); "0" disables it`)
}

// bindMetricsSecure binds --metrics-secure: the cluster roles only, which can ask the API
// server who a scraper is.
func (f *callbackFlags) bindMetricsSecure(fs *pflag.FlagSet) {
	fs.BoolVar(&f.metricsSecure, "metrics-secure", true, metricsSecureUsage)
}

// metricsSecureUsage is --metrics-secure's help, the same for every role that has it.
const metricsSecureUsage = "serve /metrics over HTTPS (a self-signed certificate) to callers whose bearer token the API server authenticates and authorizes for GET /metrics " +
	"(e.g. bound to the ClusterRole friendgate-metrics-reader); false: plain HTTP to whoever reaches the port"

// callbackServer is a configured callback server: its store, handler and metrics.
type callbackServer struct {
	flags    *callbackFlags
	store    *webhook.Store
	metrics  *webhook.Metrics
	registry registry
	handler  *webhook.Handler
	// metricsFilter, when set, guards /metrics (the cluster roles under --metrics-secure).
	metricsFilter metricsserver.Filter
	auth          *webhook.TencentAuth
	// clientCAs verify client certificates, when --tls-client-ca-file is set.
	clientCAs *webhook.ClientCAs
	// redis is where limits are counted across replicas; nil: in this process only.
	redis *redisConfig
	// counter counts requests against policies' limits; run keeps it swept (and, with
	// Redis, probes a failed Redis).
	counter interface {
		velocity.Counter
		Run(context.Context)
	}
}

// registry is where the callback server's metrics go and what /metrics serves.
type registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// standaloneRegistry is the registry of `serve`: the callback metrics and the Go and
// process collectors. The cluster roles use controller-runtime's registry instead, which
// has those and the client and workqueue metrics.
func standaloneRegistry() registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// newCallbackServer validates the flags and builds the server with its metrics in reg; it
// warns about every setting that leaves callers unauthenticated.
func newCallbackServer(f *callbackFlags, log logr.Logger, reg registry) (*callbackServer, error) {
	failurePolicy, err := webhook.ParseFailurePolicy(f.failurePolicy)
	if err != nil {
		return nil, err
	}
	clientDetail, err := webhook.ParseClientDetail(f.clientDetail)
	if err != nil {
		return nil, fmt.Errorf("--client-detail: %w", err)
	}
	if f.maxBodyBytes <= 0 {
		return nil, fmt.Errorf("--max-body-bytes must be positive, not %d", f.maxBodyBytes)
	}
	if f.maxBatchBytes < f.maxBodyBytes {
		return nil, fmt.Errorf("--max-batch-body-bytes (%d) must be at least --max-body-bytes (%d)", f.maxBatchBytes, f.maxBodyBytes)
	}
	if f.maxInflightBytes < f.maxBatchBytes {
		return nil, fmt.Errorf("--max-inflight-body-bytes (%d) must be at least --max-batch-body-bytes (%d): a replica must be able to hold one whole callback", f.maxInflightBytes, f.maxBatchBytes)
	}
	if f.maxBatchItems <= 0 {
		return nil, fmt.Errorf("--max-batch-items must be positive, not %d", f.maxBatchItems)
	}
	tooLargePolicy, err := webhook.ParseFailurePolicy(f.tooLargePolicy)
	if err != nil {
		return nil, fmt.Errorf("--too-large-policy: %w", err)
	}
	if f.maxConnections <= 0 {
		return nil, fmt.Errorf("--max-connections must be positive, not %d", f.maxConnections)
	}
	cidrs, err := webhook.ParseAddrFilter(f.openIMCIDRs)
	if err != nil {
		return nil, fmt.Errorf("--openim-allowed-cidrs: %w", err)
	}
	if (f.tlsCertFile == "") != (f.tlsKeyFile == "") {
		return nil, fmt.Errorf("--tls-cert-file and --tls-key-file go together")
	}
	s := &callbackServer{flags: f, registry: reg}
	if s.redis, err = f.redisConfig(); err != nil {
		return nil, err
	}
	var upstream *webhook.Upstream
	if f.upstreamURL != "" {
		fp, err := webhook.ParseFailurePolicy(f.upstreamFailure)
		if err != nil {
			return nil, fmt.Errorf("--openim-upstream-failure-policy: %w", err)
		}
		if f.upstreamTimeout <= 0 {
			return nil, fmt.Errorf("--openim-upstream-timeout must be positive, not %s", f.upstreamTimeout)
		}
		upstream, err = webhook.NewUpstream(webhook.UpstreamOptions{URL: f.upstreamURL, Timeout: f.upstreamTimeout,
			FriendCommands: f.upstreamFriend, FailurePolicy: fp})
		if err != nil {
			return nil, fmt.Errorf("--openim-upstream: %w", err)
		}
		log.Info("OpenIM callbacks friendgate does not decide go upstream", "upstream", upstream.URL(),
			"friendCommands", f.upstreamFriend, "timeout", f.upstreamTimeout.String())
	}
	if f.tlsClientCAFile != "" {
		if f.tlsCertFile == "" {
			return nil, fmt.Errorf("--tls-client-ca-file needs TLS: set --tls-cert-file and --tls-key-file")
		}
		if s.clientCAs, err = webhook.NewClientCAs(f.tlsClientCAFile); err != nil {
			return nil, fmt.Errorf("--tls-client-ca-file: %w", err)
		}
		log.Info("callbacks need a client certificate", "caFile", f.tlsClientCAFile)
	}
	s.metrics = webhook.NewMetrics(reg)
	s.store = webhook.NewStore(s.metrics)
	if err := s.newCounter(log); err != nil {
		return nil, err
	}
	if f.tencentTokensDir != "" {
		if f.tencentMaxSkew <= 0 {
			return nil, fmt.Errorf("--tencent-max-clock-skew must be positive, not %s", f.tencentMaxSkew)
		}
		s.auth = webhook.NewTencentAuth(f.tencentMaxSkew, nil)
		tokens, err := webhook.ReadTencentTokens(f.tencentTokensDir)
		if err != nil {
			return nil, fmt.Errorf("--tencent-tokens-dir: %w", err)
		}
		s.auth.SetTokens(tokens)
		log.Info("Tencent callbacks authenticated", "apps", len(tokens), "dir", f.tencentTokensDir)
	} else {
		log.Info("WARNING: --tencent-tokens-dir is not set: Tencent callbacks of every SdkAppid are accepted without a signature")
	}
	if len(cidrs) == 0 {
		log.Info("WARNING: --openim-allowed-cidrs is not set: OpenIM callbacks are accepted from every client address")
	}
	s.handler = webhook.NewHandler(s.store, webhook.Options{
		FailurePolicy:        failurePolicy,
		ClientDetail:         clientDetail,
		MaxBodyBytes:         f.maxBodyBytes,
		MaxInflightBodyBytes: f.maxInflightBytes,
		MaxBatchBodyBytes:    f.maxBatchBytes,
		MaxBatchItems:        f.maxBatchItems,
		TooLargePolicy:       tooLargePolicy,
		TencentAuth:          s.auth,
		Upstream:             upstream,
		RequireClientCert:    s.clientCAs != nil,
		OpenIMClients:        cidrs,
		LogAllowEvery:        f.logAllowEvery,
		Counter:              s.counter,
		Logger:               log,
		Metrics:              s.metrics,
	})
	return s, nil
}

// newCounter sets up where limits are counted: through Redis when --redis-addr is set,
// with the process's own counter as the fallback while Redis fails, else in the process.
func (s *callbackServer) newCounter(log logr.Logger) error {
	local := velocity.NewLocal(velocity.LocalOptions{Registerer: s.registry})
	if s.redis == nil {
		s.counter = local
		return nil
	}
	rc, err := velocity.NewRedis(velocity.RedisOptions{
		Addr:       s.redis.Addr,
		Username:   s.redis.Username,
		Password:   s.redis.Password,
		DB:         s.redis.DB,
		TLS:        s.redis.TLS,
		KeyPrefix:  s.redis.KeyPrefix,
		Budget:     s.redis.Budget,
		Fallback:   local,
		Logger:     log.WithName("limits"),
		Registerer: s.registry,
	})
	if err != nil {
		return fmt.Errorf("--redis-addr: %w", err)
	}
	log.Info("limits are counted in Redis, shared by the replicas", "redis", s.redis)
	s.counter = rc
	return nil
}

// run serves until ctx is done, rereading the Tencent tokens when they change.
func (s *callbackServer) run(ctx context.Context, log logr.Logger) error {
	go s.counter.Run(ctx)
	if s.auth != nil {
		// Watch before rereading, so a rotation between start-up and now is not missed.
		w, err := dirwatch.New(log.WithName("tencent-tokens"), []string{s.flags.tencentTokensDir},
			dirwatch.Options{Debounce: 100 * time.Millisecond, Resync: time.Minute})
		if err != nil {
			return fmt.Errorf("watching --tencent-tokens-dir: %w", err)
		}
		s.reloadTokens(log)
		go w.Run(ctx, func() { s.reloadTokens(log) })
	}
	if s.clientCAs != nil {
		w, err := dirwatch.New(log.WithName("client-ca"), []string{s.flags.tlsClientCAFile},
			dirwatch.Options{Debounce: 100 * time.Millisecond, Resync: time.Minute})
		if err != nil {
			return fmt.Errorf("watching --tls-client-ca-file: %w", err)
		}
		// Reread after watching, so a rotation since start-up is not missed.
		if err := s.clientCAs.Load(); err != nil {
			log.Error(err, "rereading the client CA certificates failed; the previous ones stay in force")
		}
		go w.Run(ctx, func() {
			if err := s.clientCAs.Load(); err != nil {
				log.Error(err, "rereading the client CA certificates failed; the previous ones stay in force")
			}
		})
	}
	if s.flags.metricsAddr != "0" {
		handler := promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
		var tlsConfig *tls.Config
		if s.metricsFilter != nil {
			var err error
			if handler, err = s.metricsFilter(log.WithName("metrics"), handler); err != nil {
				return fmt.Errorf("--metrics-secure: %w", err)
			}
			if tlsConfig, err = selfSignedTLS(); err != nil {
				return fmt.Errorf("--metrics-secure: %w", err)
			}
		}
		ms, err := webhook.ListenMetrics(s.flags.metricsAddr, handler, tlsConfig)
		if err != nil {
			return fmt.Errorf("--metrics-bind-address: %w", err)
		}
		// The metrics outlive the callbacks' drain, so a scrape sees the shutdown.
		mctx, stopMetrics := context.WithCancel(context.Background())
		metricsDone := make(chan error, 1)
		go func() { metricsDone <- ms.Serve(mctx, log) }()
		defer func() {
			stopMetrics()
			if err := <-metricsDone; err != nil {
				log.Error(err, "serving metrics")
			}
		}()
	}
	return webhook.ListenAndServe(ctx, log, s.handler, webhook.ServerOptions{
		Addr:            s.flags.addr,
		CertFile:        s.flags.tlsCertFile,
		KeyFile:         s.flags.tlsKeyFile,
		ClientCAs:       s.clientCAs,
		DrainPeriod:     webhook.DefaultDrainPeriod,
		ShutdownTimeout: s.flags.shutdownTimeout,
		MaxConnections:  s.flags.maxConnections,
		Metrics:         s.metrics,
	})
}

// reloadTokens rereads the Tencent tokens; on failure the previous ones stay in force.
func (s *callbackServer) reloadTokens(log logr.Logger) {
	tokens, err := webhook.ReadTencentTokens(s.flags.tencentTokensDir)
	if err != nil {
		log.Error(err, "rereading Tencent tokens failed; the previous ones stay in force")
		return
	}
	s.auth.SetTokens(tokens)
	log.V(1).Info("Tencent tokens read", "apps", len(tokens))
}

// defaultGCMinHeadroom is --gc-min-headroom's default: a replica with a few policies
// holds a few MiB of live data and would collect every few MiB of callbacks.
const defaultGCMinHeadroom = 64 << 20

// releaseBuildMemory returns to the OS what building a snapshot used and no longer needs
// (parsed manifests, decoded ConfigMaps). Without it a replica keeps the build's peak as
// resident memory: the garbage collector lets the heap grow to twice the live data between
// collections and returns freed pages slowly. A build is rare and costs more than the
// collection this forces (the large parts of a compiled list hold no pointers to scan).
// It runs once the snapshot is swapped in, so the collection delays neither readiness nor
// a change's enforcement (the collection of a 10,000-policy heap takes some 60 ms) and
// frees the replaced snapshot too; callbacks go on meanwhile. Then, with the live data
// known, it sets the collector's pacing (see gcPercent).
func (s *callbackServer) releaseBuildMemory() {
	debug.FreeOSMemory()
	if s.flags.gcMinHeadroom <= 0 || os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	debug.SetGCPercent(gcPercent(sample[0].Value.Uint64(), uint64(s.flags.gcMinHeadroom)))
}

// gcPercent is the GOGC that lets the heap grow by at least headroom above live bytes
// before a collection, and by no less than Go's default (100: the live data again). A
// collection's cost follows the live data and the rate of collections the bytes
// allocated between them, so a small live heap with Go's default pays a full scan of
// the policies every few MiB of callbacks; a floor of headroom trades that much memory
// for far fewer scans. Large policy sets keep Go's default.
func gcPercent(live, headroom uint64) int {
	if live == 0 || headroom <= live {
		return 100
	}
	return int(min(headroom*100/live, 100_000))
}

// selfSignedTLS is a TLS configuration with a certificate made for this process, as
// controller-runtime's secure metrics server has: what the scraper must present is its
// token, and the connection only keeps it from being read on the way.
func selfSignedTLS() (*tls.Config, error) {
	host, _ := os.Hostname()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(cmp.Or(host, "friendgate"), nil, nil)
	if err != nil {
		return nil, fmt.Errorf("a self-signed certificate for /metrics: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("a self-signed certificate for /metrics: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
