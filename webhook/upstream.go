package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/friendgate/friendgate/internal/text"
)

// DefaultUpstreamTimeout bounds a forwarded callback: OpenIM's shipped configuration gives
// the whole callback 5 s, and friendgate needs a moment to answer after the upstream.
const DefaultUpstreamTimeout = 3 * time.Second

// maxUpstreamAnswer bounds an upstream's answer: OpenIM answers are a few hundred bytes.
const maxUpstreamAnswer = 1 << 20

// Upstream is an existing OpenIM webhook backend that friendgate sits in front of. OpenIM
// has one webhook URL for every callback, so friendgate receives the message, group and
// user callbacks too: it forwards the commands it does not decide, and optionally the
// friend commands it allows, so that the backend keeps its say.
type Upstream struct {
	base           *url.URL
	client         *http.Client
	timeout        time.Duration
	friendCommands bool
	failurePolicy  FailurePolicy
}

// UpstreamOptions configure an Upstream.
type UpstreamOptions struct {
	// URL is the backend's configured OpenIM webhook URL; a callback goes to URL/<command>.
	URL string
	// Timeout bounds each forwarded callback; 0 means DefaultUpstreamTimeout.
	Timeout time.Duration
	// FriendCommands forwards the friend commands friendgate allows too, and relays the
	// backend's answer to them.
	FriendCommands bool
	// FailurePolicy answers a callback the backend did not answer (an error, a timeout, a
	// status other than 2xx, a body that is not JSON); empty means Deny, which is what
	// OpenIM does when its backend fails.
	FailurePolicy FailurePolicy
}

// NewUpstream checks the options and returns the upstream.
func NewUpstream(o UpstreamOptions) (*Upstream, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream URL %q: want http(s)://host[:port][/path]", o.URL)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultUpstreamTimeout
	}
	if o.FailurePolicy == "" {
		o.FailurePolicy = FailDeny
	}
	return &Upstream{
		base:           u,
		timeout:        o.Timeout,
		friendCommands: o.FriendCommands,
		failurePolicy:  o.FailurePolicy,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
			},
			// A redirect is no answer an IM server would follow either.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// URL is the upstream's base URL, for logs.
func (u *Upstream) URL() string { return u.base.Redacted() }

// hopHeaders are not forwarded: they describe the connection, not the callback.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"}

// forward sends the callback body of command (forwardable) to the upstream and returns its
// answer.
func (u *Upstream) forward(ctx context.Context, r *http.Request, command string, body []byte) (status int, answer []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	target := *u.base
	target.Path = strings.TrimSuffix(target.Path, "/") + "/" + command
	target.RawPath = ""
	target.RawQuery = r.URL.RawQuery
	// A copy: the transport may go on reading a request's body after Do returns (when the
	// upstream answers before it has read it all, or the timeout ends the exchange), and
	// body is the pooled buffer the next callback is read into.
	req, err := http.NewRequestWithContext(ctx, r.Method, target.String(), bytes.NewReader(bytes.Clone(body)))
	if err != nil {
		return 0, nil, err
	}
	req.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err = io.ReadAll(io.LimitReader(resp.Body, maxUpstreamAnswer+1))
	switch {
	case err != nil:
		return resp.StatusCode, nil, fmt.Errorf("reading the answer: %w", err)
	case len(answer) > maxUpstreamAnswer:
		return resp.StatusCode, nil, fmt.Errorf("answer larger than %d bytes", maxUpstreamAnswer)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return resp.StatusCode, nil, fmt.Errorf("status %d", resp.StatusCode)
	case !json.Valid(answer):
		return resp.StatusCode, nil, errors.New("answer is not JSON")
	}
	return resp.StatusCode, answer, nil
}

// forwardable reports whether command can be a path segment of the upstream's URL: OpenIM
// names its commands in letters and digits, and anything else (a "..", say) could point
// the callback at another path of the upstream.
func forwardable(command string) bool {
	if command == "" || len(command) > 128 {
		return false
	}
	for i := 0; i < len(command); i++ {
		switch b := command[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		default:
			return false
		}
	}
	return true
}

// forwardOpenIM forwards an OpenIM callback to the upstream and relays its answer; when
// the upstream does not answer, the upstream's failure policy does.
func (h *Handler) forwardOpenIM(w http.ResponseWriter, r *http.Request, c *call, cmd *command, command, traceID string) {
	u := h.opts.Upstream
	if !forwardable(command) {
		h.failOpenIM(w, c, cmd, false, traceID, &refusal{upstreamFailed, http.StatusBadRequest,
			"command " + strconv.Quote(text.Truncate(command, 64)) + " is not forwarded to the upstream webhook: a command name is letters and digits"})
		return
	}
	start := time.Now()
	_, answer, err := u.forward(r.Context(), r, command, c.body)
	m := h.opts.Metrics
	m.upstreamLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		result := "error"
		if errors.Is(err, context.DeadlineExceeded) {
			result = "timeout"
		}
		m.upstreamRequests.WithLabelValues(result).Inc()
		status := http.StatusBadGateway
		if result == "timeout" {
			status = http.StatusGatewayTimeout
		}
		h.failOpenIM(w, c, cmd, false, traceID, &refusal{upstreamFailed, status, "the upstream webhook did not answer: " + err.Error()})
		return
	}
	m.upstreamRequests.WithLabelValues("ok").Inc()
	cmd.metrics.status(http.StatusOK)
	writeJSON(w, http.StatusOK, answer)
}
