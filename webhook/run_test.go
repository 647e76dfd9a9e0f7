package webhook

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
)

// After SIGTERM (ctx done) the server goes on answering on a client's kept-alive
// connection, asking it to close the connection, rather than closing it under the client:
// a client sending on an idle connection the server has just closed gets an error, and
// does not retry a POST.
func TestListenAndServeDrainsKeepAliveConnections(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	draining := make(chan struct{})
	var once sync.Once
	log := funcr.New(func(_, args string) {
		if strings.Contains(args, `"draining`) {
			once.Do(func() { close(draining) })
		}
	}, funcr.Options{})
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	go func() {
		done <- ListenAndServe(ctx, log, handler, ServerOptions{
			Addr: "127.0.0.1:0", DrainPeriod: time.Second, ShutdownTimeout: 5 * time.Second,
			Metrics: NewMetrics(prometheus.NewRegistry()),
			Ready:   func(a net.Addr) { addrc <- a },
		})
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("server: %v", err)
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	post := func() (resp *http.Response, reused bool) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodPost, "http://"+addr.String()+"/", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err = client.Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("POST: %s %q %v", resp.Status, body, err)
		}
		return resp, reused
	}
	before := time.Now().Truncate(time.Second)
	resp, _ := post()
	if resp.Close {
		t.Fatal("before shutdown the server asked to close the connection")
	}
	// The server's own Date header, once, and current (to the second).
	if dates := resp.Header.Values("Date"); len(dates) != 1 {
		t.Errorf("Date headers %q, want one", dates)
	} else if date, err := http.ParseTime(dates[0]); err != nil || date.Before(before) || date.After(time.Now()) {
		t.Errorf("Date %q (%v), want a time from %s to now", dates[0], err, before.UTC().Format(http.TimeFormat))
	}

	cancel()
	select {
	case <-draining:
	case <-time.After(10 * time.Second):
		t.Fatal("the server logged no drain after its context was done")
	}
	resp, reused := post()
	if !reused {
		t.Error("the request after shutdown began did not go over the kept-alive connection")
	}
	if !resp.Close {
		t.Error("while draining, the answer did not ask the client to close the connection")
	}
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe after the drain: %v", err)
	}
}
