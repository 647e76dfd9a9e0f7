package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM while a callback is in flight: the callback is still
// answered and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePolicies(t, protocolPolicies))

	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(stopTimeout)); err != nil {
		t.Fatal(err)
	}
	body := openIMAddFriend("spam_1", "bob", "hello")
	// With Expect: 100-continue the server answers 100 once the handler reads the body, so
	// the request is in flight before SIGTERM; the body follows after it.
	fmt.Fprintf(conn, "POST /openim/callbackBeforeAddFriendCommand HTTP/1.1\r\nHost: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", s.addr, len(body))
	answers := bufio.NewReader(conn)
	resp, err := http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatalf("waiting for 100 Continue: %v", err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %q before the body was sent, want 100 Continue", resp.Status)
	}

	s.terminate(t)
	s.waitLog(t, map[string]string{"msg": "shutting down: finishing in-flight requests"})
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatalf("sending the body after SIGTERM: %v", err)
	}
	resp, err = http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatalf("reading the answer of the in-flight request: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the answer of the in-flight request: %v", err)
	}
	if resp.StatusCode != http.StatusOK || string(got) != spammerDeny {
		t.Errorf("in-flight request answered %d %s, want 200 %s", resp.StatusCode, got, spammerDeny)
	}
	s.waitExit(t)
}
