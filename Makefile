# friendgate Makefile: kubebuilder-style targets. Tools are installed into bin/ at
# pinned versions by the targets that need them.

GO ?= go
LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD, the RBAC of each role and the admission webhook configuration under config/.
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=friendgate-controller paths="./controllers/status/...;./internal/admission/...;./internal/metricsauth/...;./cmd/..." output:rbac:artifacts:config=config/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=friendgate-webhook paths="./internal/replica/...;./internal/metricsauth/..." output:rbac:artifacts:config=config/rbac/webhook
	$(CONTROLLER_GEN) webhook paths="./internal/admission/..." output:webhook:artifacts:config=config/webhook
	$(MAKE) --no-print-directory chart-sync

.PHONY: generate
generate: controller-gen ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	$(GO) fmt ./...

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml: kubebuilder's linter set).
	$(GOLANGCI_LINT) run ./...

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply its fixes.
	$(GOLANGCI_LINT) run --fix ./...

.PHONY: test
test: vet lint envtest-assets controller-gen helm redis-server ## Run every test: lint, unit, envtest, end-to-end, chart, samples, fuzz smoke, and the scenario on real pods.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" CONTROLLER_GEN="$(CONTROLLER_GEN)" HELM="$(LOCALBIN)/helm" $(GO) test ./... -count=1
	$(MAKE) test-argocd-health
	$(MAKE) fuzz
	$(MAKE) test-samples
	$(MAKE) test-pods

.PHONY: unit
unit: ## Run the tests that need no API server (go test -short: engine, callback server, pure functions), for a fast inner loop.
	HELM="$(LOCALBIN)/helm" $(GO) test -short ./...

.PHONY: e2e
e2e: envtest-assets ## Run the end-to-end tests: serve over HTTP, and the operator scenario against a local control plane.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) test ./test/e2e/... -count=1 -v

MEASURE_REPORT ?= $(LOCALBIN)/measure.txt
.PHONY: measure
measure: envtest-assets ## Measure propagation (20 applies); replica and serve memory with 1,000,000 and 10,000,000 list entries and with 10,000 scoped policies; see docs/operator.md and docs/benchmarks.md.
	rm -f $(MEASURE_REPORT)
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" FRIENDGATE_E2E_MEMORY=1 FRIENDGATE_E2E_REPORT=$(MEASURE_REPORT) \
	  $(GO) test ./test/e2e/cluster/ -count=1 -v -timeout 30m
	FRIENDGATE_E2E_MEMORY=1 FRIENDGATE_E2E_REPORT=$(MEASURE_REPORT) \
	  $(GO) test ./test/e2e/ -run '^TestMeasure(ServeLists|ScopedPolicies)$$' -count=1 -v -timeout 30m
	cat $(MEASURE_REPORT)

.PHONY: measure-load
measure-load: build ## Callbacks per server CPU-second over loopback, friendgate vs a no-op net/http handler (wrk; server and wrk on separate cores); see docs/benchmarks.md.
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	$(GO) build -o $(LOCALBIN)/noopserver ./hack/noopserver
	$(GO) run ./hack/loadbench --friendgate $(LOCALBIN)/friendgate --noop $(LOCALBIN)/noopserver --samples config/samples

HOSTILE_REPORT ?= $(LOCALBIN)/measure-hostile.txt
.PHONY: measure-hostile
measure-hostile: ## Measure one replica's memory under 4 rounds of 1,000 slow 1 MiB bodies, and honest callbacks' latency meanwhile; see docs/benchmarks.md.
	rm -f $(HOSTILE_REPORT)
	FRIENDGATE_E2E_HOSTILE=1 FRIENDGATE_E2E_REPORT=$(HOSTILE_REPORT) $(GO) test ./test/e2e/ -run '^TestMeasureHostile$$' -count=1 -v -timeout 10m
	cat $(HOSTILE_REPORT)

LIMITS_REPORT ?= $(LOCALBIN)/measure-limits.txt
.PHONY: measure-limits
measure-limits: redis-server ## Measure limits over 3 replicas: overshoot of 1,000 requests of one sender at a limit of 100 (Redis healthy and stopped), and what counting through Redis costs a callback; see docs/benchmarks.md.
	mkdir -p $(LOCALBIN)
	rm -f $(LIMITS_REPORT)
	FRIENDGATE_E2E_LIMITS=1 FRIENDGATE_E2E_REPORT=$(LIMITS_REPORT) $(GO) test ./test/e2e/ -run '^TestMeasureLimitOvershoot$$' -count=1 -v -timeout 10m
	cat $(LIMITS_REPORT)

SCALE_N ?= 100,1000,5000
SCALE_REPORT ?= $(LOCALBIN)/measure-scale.txt
.PHONY: measure-scale
measure-scale: envtest-assets ## Measure a webhook replica joining and leaving with SCALE_N policies (default 100,1000,5000; slow); see docs/operator.md.
	rm -f $(SCALE_REPORT)
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" FRIENDGATE_E2E_SCALE=$(SCALE_N) FRIENDGATE_E2E_REPORT=$(SCALE_REPORT) \
	  $(GO) test ./test/e2e/cluster/ -run '^TestScale$$' -count=1 -v -timeout 90m
	cat $(SCALE_REPORT)

.PHONY: local-cluster
local-cluster: envtest-assets build ## Run a local control plane (etcd + kube-apiserver) with the CRD; prints how to start the roles.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) run ./hack/localcluster --dir $(LOCALBIN)/local

.PHONY: test-samples
test-samples: build ## Run friendgate test on the shipped samples.
	$(LOCALBIN)/friendgate test config/samples

# A count of executions, not a duration: Go 1.26's fuzz coordinator can fail a target with
# "context deadline exceeded" when a duration runs out on a busy machine (golang/go#75804,
# fixed in Go 1.27). A longer run by hand: make fuzz FUZZ_TIME=1m.
FUZZ_TIME ?= 20000x
.PHONY: fuzz
fuzz: ## Run each fuzz target briefly.
	@# Found with grep, not `go test -list`, which would start every package's TestMain
	@# (API servers included) just to list its tests.
	@for dir in $$(grep -rl --include='*_test.go' --exclude-dir=bin '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$dir/*_test.go); do \
	    echo "fuzz $$dir $$target ($(FUZZ_TIME))"; \
	    $(GO) test $$dir -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZ_TIME) || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## Run the engine and callback server benchmarks (numbers go to docs/benchmarks.md).
	$(GO) test ./internal/policy/ ./webhook/ -run '^$$' -bench . -benchmem

.PHONY: redis-server
redis-server: ## Install Debian's redis-server when missing: the velocity counters' tests start their own.
	@command -v redis-server >/dev/null || { apt-get update && apt-get install -y --no-install-recommends redis-server; }

.PHONY: envtest-assets
envtest-assets: ## Build etcd, kube-apiserver and kubectl from the Go module proxy into bin/k8s (cached).
	hack/envtest-assets.sh >/dev/null

##@ Cluster (a real single-node cluster on this machine: docs/cluster.md)

# Where the cluster keeps its state, certificates, logs and containerd's images.
CLUSTER_DIR ?= /var/lib/friendgate-cluster
CLUSTER_IMAGES ?= $(LOCALBIN)/images
# The image the chart runs in the cluster; pods use it with imagePullPolicy Never.
CLUSTER_IMG ?= friendgate.local/friendgate:dev
CLUSTER_PAUSE_IMG ?= friendgate.local/pause:3.10.2
NODE_COMPONENTS = kubelet kube-controller-manager kube-scheduler kube-proxy
CLUSTER_FLAGS = --dir $(CLUSTER_DIR) --assets "$$(hack/envtest-assets.sh $(NODE_COMPONENTS))" --pause-image $(CLUSTER_PAUSE_IMG)

.PHONY: cluster-assets
cluster-assets: ## Build kubelet, kube-controller-manager, kube-scheduler and kube-proxy beside the envtest binaries (cached; ~16 min cold on 2 cores).
	hack/envtest-assets.sh $(NODE_COMPONENTS) >/dev/null

.PHONY: cluster-images
cluster-images: ## Assemble the friendgate image (the Dockerfile's recipe) and the pause image as archives in bin/images (hack/image).
	cd hack/image && $(GO) run . pause -o $(CLUSTER_IMAGES)/pause.tar -tag $(CLUSTER_PAUSE_IMG)
	cd hack/image && $(GO) run . friendgate -dockerfile $(CURDIR)/Dockerfile -o $(CLUSTER_IMAGES)/friendgate.tar -tag $(CLUSTER_IMG)

.PHONY: cluster-tool
cluster-tool:
	$(GO) build -o $(LOCALBIN)/cluster ./hack/cluster

.PHONY: cluster-up
cluster-up: cluster-assets cluster-images cluster-tool ## Start the cluster (as root) with the images loaded; prints the KUBECONFIG to export.
	$(LOCALBIN)/cluster up $(CLUSTER_FLAGS) --load $(CLUSTER_IMAGES)/pause.tar,$(CLUSTER_IMAGES)/friendgate.tar

.PHONY: cluster-down
cluster-down: cluster-tool ## Stop the cluster and remove every process, mount, cgroup, interface, route and iptables rule it added.
	$(LOCALBIN)/cluster down $(CLUSTER_FLAGS)

PODS_TEST_FLAGS ?=
# The scenario runs a cluster of its own, so one started by hand must be stopped first.
# It tears its cluster down itself; the trap does it again (a no-op then) for a test
# binary that was killed or timed out.
PODS_TEST = if [ -e $(CLUSTER_DIR)/state.json ]; then echo "a cluster is up in $(CLUSTER_DIR): make cluster-down first" >&2; exit 1; fi; \
	trap '$(LOCALBIN)/cluster down $(CLUSTER_FLAGS)' EXIT INT TERM; \
	CLUSTER_ASSETS="$$(hack/envtest-assets.sh $(NODE_COMPONENTS))" CLUSTER_IMAGES=$(CLUSTER_IMAGES) CLUSTER_DIR=$(CLUSTER_DIR) HELM=$(HELM)

.PHONY: test-pods
test-pods: cluster-assets cluster-images cluster-tool helm ## Run the scenario on real pods (root): helm install, a rollout under load, leader failover, admission; docs/cluster.md.
	$(LOCALBIN)/cluster packages
	$(PODS_TEST) $(GO) test ./test/pods/ -count=1 -v -timeout 40m $(PODS_TEST_FLAGS)

PODS_REPORT ?= $(LOCALBIN)/pods-report.txt
.PHONY: measure-pods
measure-pods: cluster-assets cluster-images cluster-tool helm ## The pods scenario with 5 timed helm installs; figures in bin/pods-report.txt (docs/cluster.md).
	rm -f $(PODS_REPORT)
	$(LOCALBIN)/cluster packages
	$(PODS_TEST) FRIENDGATE_PODS_INSTALLS=5 FRIENDGATE_PODS_REPORT=$(PODS_REPORT) $(GO) test ./test/pods/ -count=1 -v -timeout 60m
	cat $(PODS_REPORT)

##@ Build

.PHONY: build
build: ## Build bin/friendgate.
	$(GO) build -o $(LOCALBIN)/friendgate .

.PHONY: run
run: build ## Serve the samples locally (friendgate serve --policies config/samples).
	$(LOCALBIN)/friendgate serve --policies config/samples

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install the pinned controller-gen (CONTROLLER_TOOLS_VERSION) into bin/.
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: golangci-lint
golangci-lint: ## Install the pinned golangci-lint (GOLANGCI_LINT_VERSION) into bin/; reinstalls when bin/golangci-lint is another version.
	@if ! $(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION:v%=%) "; then \
	  echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into $(LOCALBIN)"; \
	  GOBIN=$(LOCALBIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi

##@ Chart and image

HELM ?= $(LOCALBIN)/helm
HELM_VERSION ?= v3.22.0
# The Kubernetes version Helm's client-go is (v0.37 for Helm v3.22), which release builds
# of Helm stamp in: the .Capabilities.KubeVersion of `helm template` and `helm lint`.
HELM_KUBE_MINOR ?= 37
CHART ?= charts/friendgate
IMG ?= ghcr.io/friendgate/friendgate:0.1.0
# Empty: the Dockerfile's own defaults. A release passes digests, e.g.
# GO_IMAGE=golang:1.26.8-bookworm@sha256:... BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:...
GO_IMAGE ?=
BASE_IMAGE ?=

.PHONY: helm
helm: ## Install the pinned Helm (HELM_VERSION) into bin/ (go install from the Go module proxy); reinstalls when bin/helm is another version.
	@if [ "$$($(LOCALBIN)/helm version --template '{{.Version}}' 2>/dev/null)" != "$(HELM_VERSION)" ]; then \
	  echo "installing helm $(HELM_VERSION) into $(LOCALBIN)"; \
	  GOBIN=$(LOCALBIN) $(GO) install -ldflags "-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_KUBE_MINOR) \
	    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_KUBE_MINOR)" \
	    helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	fi

.PHONY: chart-sync
chart-sync: ## Copy the generated CRD, RBAC and admission webhook manifests into the chart (after make manifests).
	rm -f $(CHART)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/controller/role.yaml $(CHART)/files/generated/rbac-controller.yaml
	cp config/rbac/webhook/role.yaml $(CHART)/files/generated/rbac-webhook.yaml
	cp config/webhook/manifests.yaml $(CHART)/files/generated/admission-webhook.yaml

.PHONY: chart-test
chart-test: envtest-assets helm ## Lint and render the chart and config/default; dry-run every object and check RBAC against a local API server.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" HELM="$(HELM)" $(GO) test ./test/chart/ -count=1 -v

.PHONY: docker-build
docker-build: ## Build the image IMG (needs a Docker engine; GO_IMAGE/BASE_IMAGE pin the bases by digest).
	docker build $(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(IMG) .

.PHONY: docker-build-check
docker-build-check: ## Without Docker: run the Dockerfile's build-stage go build on its COPY'd files and check the binary is static.
	$(GO) test ./hack/ -run '^TestDockerfileBuildStage$$' -count=1 -v

.PHONY: test-argocd-health
test-argocd-health: ## Run docs/gitops.md's Argo CD health check (Lua) against every FriendPolicy state (a module of its own).
	cd test/chart/argocd && $(GO) test ./... -count=1
