package chart

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
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

// TestMetricsDocumented: every metric the binaries register is named in the docs, and
// every friendgate metric the docs name is one the code registers, so a rename cannot
// leave an operator's alert or query pointing at nothing.
func TestMetricsDocumented(t *testing.T) {
	root := repoRoot(t)
	nameRE := regexp.MustCompile(`Name:\s+"(friendgate_\w+)"`)
	registered := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "bin" || rel == "test" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range nameRE.FindAllStringSubmatch(string(data), -1) {
			registered[m[1]] = rel
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(registered) < 20 {
		t.Fatalf("found only %d metric names in the Go sources; has the registration style changed?", len(registered))
	}

	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, filepath.Join(root, "README.md"), filepath.Join(root, chartDir, "README.md"))
	documented := map[string]bool{}
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, doc)
		for _, m := range regexp.MustCompile(`friendgate_[a-z_]+[a-z]`).FindAllString(string(data), -1) {
			name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if _, ok := registered[name]; !ok {
				t.Errorf("%s names %s, which no Go source registers", rel, m)
			}
			documented[name] = true
		}
	}
	for name, file := range registered {
		if !documented[name] {
			t.Errorf("%s registers %s, which no doc describes", file, name)
		}
	}
}
