// Package argocd runs the Argo CD health check for FriendPolicies that docs/gitops.md
// documents, with gopher-lua (the Lua interpreter Argo CD embeds), against a
// FriendPolicy in every state the controller reports.
package argocd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

const healthKey = "resource.customizations.health.friendgate.io_FriendPolicy"

func TestFriendPolicyHealth(t *testing.T) {
	script := healthScript(t)
	withReady := func(status, reason string) string {
		return `{"apiVersion":"friendgate.io/v1alpha1","kind":"FriendPolicy",
		  "metadata":{"name":"anti-spam","namespace":"im-prod","generation":3},
		  "status":{"observedGeneration":3,"enforced":"2/3","conditions":[
		    {"type":"Ready","status":"` + status + `","reason":"` + reason + `","message":"the message"}]}}`
	}
	for _, c := range []struct {
		name, obj, status, message string
	}{
		{"Enforced", withReady("True", "Enforced"), "Healthy", "Enforced: the message"},
		{"Propagating", withReady("False", "Propagating"), "Progressing", "Propagating: the message"},
		{"NoReplicas", withReady("False", "NoReplicas"), "Progressing", "NoReplicas: the message"},
		{"Invalid", withReady("False", "Invalid"), "Degraded", "Invalid: the message"},
		{"ListError", withReady("False", "ListError"), "Degraded", "ListError: the message"},
		{"no status yet", `{"metadata":{"name":"p","generation":1}}`, "Progressing", "Waiting for the friendgate controller"},
		{"status of an older generation", strings.Replace(withReady("True", "Enforced"), `"generation":3`, `"generation":4`, 1),
			"Progressing", "Waiting for the friendgate controller to observe generation 4"},
		{"no Ready condition", `{"metadata":{"generation":1},"status":{"observedGeneration":1,"conditions":[]}}`, "Progressing", "Waiting for the friendgate controller"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, message := evaluate(t, script, c.obj)
			if status != c.status || message != c.message {
				t.Errorf("health %q (%q), want %q (%q)", status, message, c.status, c.message)
			}
		})
	}
}

// healthScript returns the Lua script of the argocd-cm example in docs/gitops.md.
func healthScript(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "gitops.md"))
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(doc), "```yaml\ndata:\n  "+healthKey)
	if start < 0 {
		t.Fatalf("docs/gitops.md has no argocd-cm block with %s", healthKey)
	}
	block := string(doc)[start+len("```yaml\n"):]
	block = block[:strings.Index(block, "\n```")]
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.UnmarshalStrict([]byte(block), &cm); err != nil {
		t.Fatal(err)
	}
	return cm.Data[healthKey]
}

// evaluate runs the script as Argo CD does: the resource as the global table obj, the
// result a table with status and message.
func evaluate(t *testing.T, script, object string) (status, message string) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(object), &obj); err != nil {
		t.Fatal(err)
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer l.Close()
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		t.Fatalf("the health script fails: %v", err)
	}
	hs, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("the health script returned %v, want a table", l.Get(-1))
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message"))
}

// toLua converts decoded JSON to Lua values the way Argo CD hands a resource to Lua.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := l.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(l, e))
		}
		return t
	case []any:
		t := l.NewTable()
		for _, e := range v {
			t.Append(toLua(l, e))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}
