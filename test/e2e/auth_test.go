package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The vendor's example: token xxxxyyyy signs RequestTime 1669872112 as vendorSign.
const (
	vendorApp         = "1400000001"
	vendorToken       = "xxxxyyyy"
	vendorRequestTime = "1669872112"
	vendorSign        = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
)

// sign is the Sign Tencent sends: lowercase hex SHA-256 of the token followed by the time.
func sign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

// tokensDir writes one token file per app, the layout of a mounted Secret.
func tokensDir(t *testing.T, tokens map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for app, token := range tokens {
		writeFile(t, filepath.Join(dir, app), token)
	}
	return dir
}

// authCase is a signed (or unsigned) Sns.CallbackPrevFriendAdd from alice to bob.
type authCase struct {
	name   string
	app    string
	params []string // Sign and RequestTime, as name, value pairs
	status int      // the wanted HTTP status
	reason string   // the reason label of friendgate_auth_failures_total, for refusals
}

func (c authCase) exchange() exchange {
	want := tencentResult(allowed("bob"))
	if c.reason != "" {
		want = tencentFail(c.status, fmt.Sprintf("authentication failed: %s (SdkAppid %s)", c.reason, c.app))
	}
	return exchange{
		name:       c.name,
		path:       tencentPath(c.app, "Sns.CallbackPrevFriendAdd", c.params...),
		body:       friendAdd("alice", "bob"),
		wantStatus: c.status,
		wantBody:   want,
	}
}

func TestTencentAuth(t *testing.T) {
	t.Parallel()
	policies := writePolicies(t, protocolPolicies)

	t.Run("signature", func(t *testing.T) {
		t.Parallel()
		// The vendor's example is years old: allow a clock skew that covers it.
		skew := time.Since(time.Unix(1669872112, 0)) + 24*time.Hour // vendorRequestTime
		s := startServer(t, policies,
			"--tencent-tokens-dir", tokensDir(t, map[string]string{vendorApp: vendorToken, "1400000002": ""}),
			"--tencent-max-clock-skew", skew.Round(time.Second).String())
		cases := []authCase{
			{name: "vendor example", app: vendorApp, params: []string{"Sign", vendorSign, "RequestTime", vendorRequestTime},
				status: http.StatusOK},
			{name: "app with an empty token needs no signature", app: "1400000002", status: http.StatusOK},
			{name: "signed with another token", app: vendorApp, params: []string{"Sign", sign("wrongtoken", vendorRequestTime), "RequestTime", vendorRequestTime},
				status: http.StatusUnauthorized, reason: "bad_signature"},
			{name: "signature replayed with another RequestTime", app: vendorApp, params: []string{"Sign", vendorSign, "RequestTime", "1669872113"},
				status: http.StatusUnauthorized, reason: "bad_signature"},
			{name: "truncated signature", app: vendorApp, params: []string{"Sign", vendorSign[:32], "RequestTime", vendorRequestTime},
				status: http.StatusUnauthorized, reason: "bad_signature"},
			{name: "missing Sign", app: vendorApp, params: []string{"RequestTime", vendorRequestTime},
				status: http.StatusUnauthorized, reason: "missing_signature"},
			{name: "missing RequestTime", app: vendorApp, params: []string{"Sign", vendorSign},
				status: http.StatusUnauthorized, reason: "missing_signature"},
			{name: "RequestTime not a number", app: vendorApp, params: []string{"Sign", sign(vendorToken, "soon"), "RequestTime", "soon"},
				status: http.StatusUnauthorized, reason: "bad_request_time"},
			{name: "unknown SdkAppid", app: "1400000009", params: []string{"Sign", vendorSign, "RequestTime", vendorRequestTime},
				status: http.StatusForbidden, reason: "unknown_app"},
		}
		t.Run("requests", func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					s.check(t, c.exchange())
				})
			}
		})

		// Each refusal is counted by reason, and only accepted callbacks are evaluated.
		wantFailures := map[string]float64{}
		var wantDecisions float64
		for _, c := range cases {
			if c.reason != "" {
				wantFailures[c.reason]++
			} else {
				wantDecisions++ // one friend item each
			}
		}
		for reason, want := range wantFailures {
			s.checkMetric(t, "friendgate_auth_failures_total", map[string]string{"protocol": "tencent", "reason": reason}, want)
		}
		s.checkMetric(t, "friendgate_decisions_total", map[string]string{"protocol": "tencent"}, wantDecisions)
	})

	t.Run("clock skew and token rotation", func(t *testing.T) {
		t.Parallel()
		dir := tokensDir(t, map[string]string{vendorApp: vendorToken, "1400000003": "old-token"})
		s := startServer(t, policies, "--tencent-tokens-dir", dir) // default skew: 60 s
		signedAt := func(token string, at time.Time) []string {
			ts := strconv.FormatInt(at.Unix(), 10)
			return []string{"Sign", sign(token, ts), "RequestTime", ts}
		}
		now := time.Now()

		t.Run("requests", func(t *testing.T) {
			for _, c := range []authCase{
				{name: "signed now", app: vendorApp, params: signedAt(vendorToken, now), status: http.StatusOK},
				{name: "signed an hour ago", app: vendorApp, params: signedAt(vendorToken, now.Add(-time.Hour)),
					status: http.StatusUnauthorized, reason: "stale_request_time"},
				{name: "signed an hour ahead", app: vendorApp, params: signedAt(vendorToken, now.Add(time.Hour)),
					status: http.StatusUnauthorized, reason: "stale_request_time"},
				{name: "vendor example is stale", app: vendorApp, params: []string{"Sign", vendorSign, "RequestTime", vendorRequestTime},
					status: http.StatusUnauthorized, reason: "stale_request_time"},
			} {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					s.check(t, c.exchange())
				})
			}
		})

		t.Run("editing the token file changes the accepted token", func(t *testing.T) {
			const app = "1400000003"
			s.check(t, authCase{app: app, params: signedAt("old-token", time.Now()), status: http.StatusOK}.exchange())
			writeFile(t, filepath.Join(dir, app), "new-token")
			s.eventually(t, changeTimeout, "the new token is accepted", func() (bool, string) {
				ex := authCase{app: app, params: signedAt("new-token", time.Now()), status: http.StatusOK}.exchange()
				got := s.do(t, ex)
				return got.status == ex.wantStatus && got.body == ex.wantBody, fmt.Sprintf("%d %s", got.status, got.body)
			})
			s.check(t, authCase{app: app, params: signedAt("old-token", time.Now()),
				status: http.StatusUnauthorized, reason: "bad_signature"}.exchange())
		})
	})
}

func TestOpenIMClientCIDRs(t *testing.T) {
	t.Parallel()
	policies := writePolicies(t, protocolPolicies)
	request := func(wantStatus int, wantBody string) exchange {
		return exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", "bob", "hello"),
			wantStatus: wantStatus, wantBody: wantBody}
	}

	t.Run("loopback outside the allowed CIDRs", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, policies, "--openim-allowed-cidrs", "10.0.0.0/8")
		// Refused callers are denied whatever the failure policy: the port is the client's.
		s.check(t, request(http.StatusForbidden, openIMDeny(failureCode, failureMessage, "friendgate: client address 127.0.0.1:… is not allowed")))
		s.check(t, exchange{path: tencentPath(vendorApp, "Sns.CallbackPrevFriendAdd"), body: friendAdd("alice", "bob"),
			wantStatus: http.StatusOK, wantBody: tencentResult(allowed("bob"))})
		s.checkMetric(t, "friendgate_auth_failures_total", map[string]string{"protocol": "openim", "reason": "client_address"}, 1)
	})

	t.Run("loopback inside the allowed CIDRs", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, policies, "--openim-allowed-cidrs", "10.0.0.0/8,127.0.0.0/8")
		s.check(t, request(http.StatusOK, openIMContinue))
	})
}
