package chart

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestGrafanaDashboard: the chart's dashboard is valid JSON that Grafana can import, and
// every friendgate metric its queries use is one the callback server exports
// (webhook/metrics.go), so a renamed metric cannot leave a panel silently empty.
func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, chartDir+"/dashboards/friendgate.json")), &dash); err != nil {
		t.Fatalf("dashboards/friendgate.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile(`Name:\s+"(friendgate_\w+)"`).FindAllStringSubmatch(readFile(t, "webhook/metrics.go"), -1) {
		exported[m[1]] = true
	}
	if len(exported) == 0 {
		t.Fatal("found no metric names in webhook/metrics.go")
	}
	var used []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			for _, m := range regexp.MustCompile(`friendgate_\w+`).FindAllString(target.Expr, -1) {
				name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				if !exported[name] {
					t.Errorf("panel %q queries %s, which webhook/metrics.go does not export", p.Title, m)
				}
				if !slices.Contains(used, name) {
					used = append(used, name)
				}
			}
		}
	}
	for _, want := range []string{"friendgate_decisions_total", "friendgate_callback_duration_seconds", "friendgate_snapshot_generation"} {
		if !slices.Contains(used, want) {
			t.Errorf("no panel shows %s", want)
		}
	}
}
