package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reloadPolicy blocks one user with a code; pattern is a blocklist pattern, which makes the
// policy invalid when it is not RE2.
func reloadPolicy(user string, code int, pattern string) string {
	return fmt.Sprintf(`
apiVersion: friendgate.io/v1alpha1
kind: FriendPolicy
metadata: {name: reloaded, namespace: e2e}
spec:
  blocklists:
    - name: blocked
      users: [%s]
      patterns: ['%s']
      code: %d
      message: blocked
`, user, pattern, code)
}

func TestReload(t *testing.T) {
	t.Parallel()
	dir := writePolicies(t, reloadPolicy("first_target", 38070, "^never$"))
	path := filepath.Join(dir, "policies.yaml")
	s := startServer(t, dir)

	request := func(to string) exchange {
		return exchange{path: openIMPath("callbackBeforeAddFriendCommand"), body: openIMAddFriend("alice", to, "hello"), wantStatus: http.StatusOK}
	}
	deny := func(to string, code int) exchange {
		ex := request(to)
		ex.wantBody = openIMDeny(code, "blocked", "e2e/reloaded/blocklist/blocked")
		return ex
	}
	allow := func(to string) exchange {
		ex := request(to)
		ex.wantBody = openIMContinue
		return ex
	}
	// waitAnswer polls until the exchange gets its wanted answer.
	waitAnswer := func(t *testing.T, ex exchange) {
		t.Helper()
		s.eventually(t, changeTimeout, fmt.Sprintf("%s\nis answered %s", ex, ex.wantBody), func() (bool, string) {
			got := s.do(t, ex)
			return got.status == ex.wantStatus && got.body == ex.wantBody, fmt.Sprintf("%d %s", got.status, got.body)
		})
	}
	reloadErrors := func(t *testing.T) float64 {
		t.Helper()
		return s.metric(t, "friendgate_snapshot_reload_errors_total", map[string]string{"source": "files"})
	}

	s.check(t, deny("first_target", 38070))

	// Each step builds on the previous one: the subtests run in order and stop at the
	// first failure.
	if !t.Run("an edit changes the decision", func(t *testing.T) {
		writeFile(t, path, reloadPolicy("second_target", 38071, "^never$"))
		waitAnswer(t, deny("second_target", 38071))
		s.check(t, allow("first_target"))
	}) {
		return
	}
	if !t.Run("an invalid edit keeps the last good policies", func(t *testing.T) {
		before := reloadErrors(t)
		writeFile(t, path, reloadPolicy("third_target", 38072, "(unclosed"))
		s.eventually(t, changeTimeout, "friendgate_snapshot_reload_errors_total grows", func() (bool, string) {
			n := reloadErrors(t)
			return n > before, fmt.Sprintf("%v, was %v", n, before)
		})
		s.check(t, deny("second_target", 38071))
		s.check(t, allow("third_target"))
	}) {
		return
	}

	t.Run("fixing the edit resumes reloading", func(t *testing.T) {
		writeFile(t, path, reloadPolicy("third_target", 38072, "^never$"))
		waitAnswer(t, deny("third_target", 38072))
		s.check(t, allow("second_target"))
	})
}

// TestUnwatchablePoliciesAreReported gives serve a policy directory it cannot watch: one
// with a subdirectory nested deeper than PATH_MAX, which no path-based system call reaches
// (the watcher fails the same way on a node out of inotify instances). The failure must be
// reported at once, by an error log line or a non-zero exit, not left behind a /readyz
// that never turns ready.
func TestUnwatchablePoliciesAreReported(t *testing.T) {
	t.Parallel()
	s := spawn(t, unwatchableDir(t))
	reported := func() bool {
		select {
		case <-s.exited:
			return s.cmd.ProcessState.ExitCode() != 0
		default:
		}
		for _, e := range s.logEntries() {
			if e["level"] == "error" {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(changeTimeout); !reported(); time.Sleep(pollInterval) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, friendgate has neither logged an error nor exited non-zero", changeTimeout)
		}
	}
}

// unwatchableDir returns a directory holding a valid policy and a subdirectory nested
// deeper than Linux's PATH_MAX of 4096 bytes, built through directory handles because no
// path-based system call can reach it.
func unwatchableDir(t *testing.T) string {
	t.Helper()
	dir := writePolicies(t, protocolPolicies)
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("d", 255)
	for range 17 { // 17 levels of 256 bytes
		if err := r.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
		sub, err := r.OpenRoot(name)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		r = sub
	}
	r.Close()
	return dir
}
