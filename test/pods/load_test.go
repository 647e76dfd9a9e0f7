package pods

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// newHTTPClient is an IM server's callback client: keep-alive connections, a timeout.
func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// addFriend sends an OpenIM friend request from→bob and returns "allow", or "deny" with
// the refusal's errCode and errMsg, which the policy's blocklist sets.
func addFriend(ctx context.Context, c *http.Client, target, from string) (string, error) {
	body := fmt.Sprintf(`{"callbackCommand":"callbackBeforeAddFriendCommand","fromUserID":%q,"toUserID":"bob","reqMsg":"hi"}`, from)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+"/openim/callbackBeforeAddFriendCommand", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	var a struct {
		ErrCode  int    `json:"errCode"`
		ErrMsg   string `json:"errMsg"`
		NextCode int    `json:"nextCode"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return "", fmt.Errorf("answer %q: %v", data, err)
	}
	if a.NextCode != 1 {
		return "allow", nil
	}
	return fmt.Sprintf("deny %d %s", a.ErrCode, a.ErrMsg), nil
}

// load sends callbacks without pause from several workers, each with its own client,
// and counts them, the failed ones (no answer, or not 200) and the wrong ones (another
// decision than the policy's).
type load struct {
	cancel              context.CancelFunc
	wg                  sync.WaitGroup
	sent, failed, wrong atomic.Int64
	mu                  sync.Mutex
	samples             []string
}

// startLoad starts workers sending to target until stop, or for at most ten minutes.
func startLoad(ctx context.Context, target string, workers int) *load {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	l := &load{cancel: cancel}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := newHTTPClient()
			for i := w; ctx.Err() == nil; i++ {
				want := expectations[i%len(expectations)]
				got, err := addFriend(ctx, c, target, want.from)
				if ctx.Err() != nil {
					return // stopped mid-request: not the server's failure
				}
				l.sent.Add(1)
				switch {
				case err != nil:
					l.failed.Add(1)
					l.sample(fmt.Sprintf("%s: %v", time.Now().Format(time.StampMilli), err))
				case got != want.decision:
					l.wrong.Add(1)
					l.sample(fmt.Sprintf("%s: %s got %q, want %q", time.Now().Format(time.StampMilli), want.from, got, want.decision))
				}
			}
		}()
	}
	return l
}

func (l *load) sample(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) < 10 {
		l.samples = append(l.samples, s)
	}
}

// stop ends the load and returns its counts and up to ten failures.
func (l *load) stop() (sent, failed, wrong int64, samples []string) {
	l.cancel()
	l.wg.Wait()
	return l.sent.Load(), l.failed.Load(), l.wrong.Load(), l.samples
}
