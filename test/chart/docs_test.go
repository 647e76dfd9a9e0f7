package chart

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The examples in docs/install.md are run, so they cannot rot: the Helm values file
// renders and dry-runs, and the kustomize overlay (its remote references pointed at
// this checkout) builds, dry-runs and configures what it says.

// TestInstallDocHelmValues: the my-values.yaml of docs/install.md passes the schema and
// the API server.
func TestInstallDocHelmValues(t *testing.T) {
	values := filepath.Join(t.TempDir(), "my-values.yaml")
	if err := os.WriteFile(values, []byte(docBlock(t, "docs/install.md", "# my-values.yaml")), 0o644); err != nil {
		t.Fatal(err)
	}
	dryRun(t, helmTemplate(t, "friendgate", "friendgate-system", "-f", values))
}

// TestInstallDocKustomizeOverlay: the overlay of docs/install.md builds against this
// checkout's config/, is accepted by the API server, and gives the callback replicas the
// Tencent token directory and OpenIM CIDRs and the controller cert-manager's certificate.
func TestInstallDocKustomizeOverlay(t *testing.T) {
	root := repoRoot(t)
	overlay := docBlock(t, "docs/install.md", "# overlays/prod/kustomization.yaml")
	// Kustomize overlays must live in the tree they reference by relative path.
	dir, err := os.MkdirTemp(filepath.Join(root, "bin"), "docs-overlay-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	remote := regexp.MustCompile(`github\.com/friendgate/friendgate/(config/[a-z-]+)\?ref=\S+`)
	if !remote.MatchString(overlay) {
		t.Fatal("docs/install.md's overlay no longer references github.com/friendgate/friendgate/config/...?ref=...; update this test")
	}
	overlay = remote.ReplaceAllStringFunc(overlay, func(ref string) string {
		rel, err := filepath.Rel(dir, filepath.Join(root, remote.FindStringSubmatch(ref)[1]))
		if err != nil {
			t.Fatal(err)
		}
		return rel
	})
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(root, dir)
	manifests := kustomize(t, rel)
	dryRun(t, manifests)

	objs := decode(t, manifests)
	webhook := container(t, find(t, objs, "Deployment", "friendgate-webhook"))
	for _, want := range []string{"--tencent-tokens-dir=/etc/friendgate/tencent-tokens", "--openim-allowed-cidrs=10.42.0.0/16"} {
		if !strings.Contains(strings.Join(webhook.Args, " "), want) {
			t.Errorf("the overlay's webhook replicas run %v, without %s", webhook.Args, want)
		}
	}
	if flags(container(t, find(t, objs, "Deployment", "friendgate-controller")).Args)["--cert-rotation"] != "false" {
		t.Error("with the config/certmanager Component the controller must run --cert-rotation=false")
	}
	find(t, objs, "Certificate", "friendgate-webhook-server-cert")
	for _, o := range ofKind(objs, "Secret") {
		t.Errorf("with cert-manager the overlay must not ship %s", id(o))
	}
}

// docBlock returns the fenced code block of a Markdown file whose first line is first.
func docBlock(t *testing.T, path, first string) string {
	t.Helper()
	doc := readFile(t, path)
	start := strings.Index(doc, "```yaml\n"+first+"\n")
	if start < 0 {
		t.Fatalf("%s has no ```yaml block starting with %q", path, first)
	}
	body := doc[start+len("```yaml\n"):]
	end := strings.Index(body, "\n```")
	if end < 0 {
		t.Fatalf("%s: the block %q is not closed", path, first)
	}
	return body[:end+1]
}
