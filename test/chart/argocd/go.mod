// A module of its own, so the main module does not depend on a Lua interpreter: it runs
// the Argo CD health check of docs/gitops.md with gopher-lua, the interpreter Argo CD
// embeds. `make test-argocd-health` runs it.
module github.com/friendgate/friendgate/test/chart/argocd

go 1.26.8

require (
	github.com/yuin/gopher-lua v1.1.2
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.2 // indirect
