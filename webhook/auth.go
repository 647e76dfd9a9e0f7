package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Reasons a callback is refused before evaluation: the `reason` label of
// friendgate_auth_failures_total.
const (
	ReasonUnknownApp        = "unknown_app"
	ReasonMissingSignature  = "missing_signature"
	ReasonBadSignature      = "bad_signature"
	ReasonBadRequestTime    = "bad_request_time"
	ReasonStaleRequestTime  = "stale_request_time"
	ReasonClientAddress     = "client_address"
	ReasonClientCertificate = "client_certificate"
)

// maxTokenSize bounds one token file: Tencent tokens are short strings, and a mounted
// file of megabytes is a mistake worth reporting.
const maxTokenSize = 4 << 10

// TencentAuth checks Tencent Cloud Chat callbacks: the SdkAppid must be one the operator
// configured, and when that app has a token, Sign = hex(SHA-256(token + RequestTime)) with
// RequestTime within MaxSkew of now. The tokens are swapped in whole by SetTokens.
type TencentAuth struct {
	maxSkew time.Duration
	clock   clock.PassiveClock
	tokens  atomic.Pointer[map[string][]byte]
}

// NewTencentAuth returns a checker that refuses every app until SetTokens is called. clk
// tells the time RequestTime is compared with; nil means the real clock.
func NewTencentAuth(maxSkew time.Duration, clk clock.PassiveClock) *TencentAuth {
	if clk == nil {
		clk = clock.RealClock{}
	}
	a := &TencentAuth{maxSkew: maxSkew, clock: clk}
	a.tokens.Store(&map[string][]byte{})
	return a
}

// SetTokens replaces the app tokens: SdkAppid → token. An empty token admits the app
// without a signature.
func (a *TencentAuth) SetTokens(tokens map[string]string) {
	m := make(map[string][]byte, len(tokens))
	for app, tok := range tokens {
		m[app] = []byte(tok)
	}
	a.tokens.Store(&m)
}

// Check authenticates one callback from its query parameters. It returns 0 when the
// callback may be evaluated, otherwise the HTTP status (401 or 403) and a reason.
func (a *TencentAuth) Check(appID, sign, requestTime string) (status int, reason string) {
	token, ok := (*a.tokens.Load())[appID]
	if !ok {
		return 403, ReasonUnknownApp
	}
	if len(token) == 0 {
		return 0, ""
	}
	if sign == "" || requestTime == "" {
		return 401, ReasonMissingSignature
	}
	sec, err := strconv.ParseInt(requestTime, 10, 64)
	if err != nil {
		return 401, ReasonBadRequestTime
	}
	if skew := a.clock.Since(time.Unix(sec, 0)); skew > a.maxSkew || skew < -a.maxSkew {
		return 401, ReasonStaleRequestTime
	}
	got := make([]byte, sha256.Size)
	if len(sign) != 2*sha256.Size {
		return 401, ReasonBadSignature
	}
	if _, err := hex.Decode(got, []byte(sign)); err != nil {
		return 401, ReasonBadSignature
	}
	h := sha256.New()
	h.Write(token)
	h.Write([]byte(requestTime))
	if subtle.ConstantTimeCompare(got, h.Sum(nil)) != 1 {
		return 401, ReasonBadSignature
	}
	return 0, ""
}

// Sign is the Sign Tencent sends for a token and RequestTime, for clients and tests.
func Sign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

// ReadTencentTokens reads a directory holding one file per SdkAppid whose content is the
// app's token: the layout of a Kubernetes Secret mounted as a volume. Names starting with
// "." (the volume's ..data links and timestamped directories) and subdirectories are
// skipped; surrounding white space of a token is trimmed.
func ReadTencentTokens(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading Tencent tokens: %w", err)
	}
	tokens := make(map[string]string, len(entries))
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path) // follows the Secret volume's symlinks
		if err != nil {
			errs = append(errs, fmt.Errorf("reading Tencent token %s: %w", path, err))
			continue
		}
		if fi.IsDir() {
			continue
		}
		if fi.Size() > maxTokenSize {
			errs = append(errs, fmt.Errorf("reading Tencent token %s: %d bytes, more than %d", path, fi.Size(), maxTokenSize))
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading Tencent token %s: %w", path, err))
			continue
		}
		tokens[e.Name()] = strings.TrimSpace(string(data))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return tokens, nil
}

// AddrFilter admits clients whose address is in one of its prefixes; an empty filter
// admits every client.
type AddrFilter []netip.Prefix

// ParseAddrFilter parses CIDRs such as 10.0.0.0/8 or fd00::/8; a bare address admits
// that one address.
func ParseAddrFilter(cidrs []string) (AddrFilter, error) {
	var f AddrFilter
	for _, s := range cidrs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			f = append(f, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
		}
		a = a.Unmap()
		f = append(f, netip.PrefixFrom(a, a.BitLen()))
	}
	return f, nil
}

// Allows reports whether a request from remoteAddr (host:port, as in http.Request) is
// admitted.
func (f AddrFilter) Allows(remoteAddr string) bool {
	if len(f) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range f {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
