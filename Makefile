# friendgate Makefile: kubebuilder-style targets. Tools are installed into bin/ at
# pinned versions by the targets that need them.

GO ?= go
LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
CONTROLLER_TOOLS_VERSION ?= v0.23.0

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
	$(CONTROLLER_GEN) rbac:roleName=friendgate-controller paths="./controllers/status/...;./webhook/admission/...;./cmd/..." output:rbac:artifacts:config=config/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=friendgate-webhook paths="./controllers/snapshot/..." output:rbac:artifacts:config=config/rbac/webhook
	$(CONTROLLER_GEN) webhook paths="./webhook/admission/..." output:webhook:artifacts:config=config/webhook

.PHONY: generate
generate: controller-gen ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	$(GO) fmt ./...

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: test
test: vet envtest-assets controller-gen ## Run every test: unit, envtest, end-to-end, samples, fuzz smoke.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" CONTROLLER_GEN="$(CONTROLLER_GEN)" $(GO) test ./... -count=1
	$(MAKE) fuzz
	$(MAKE) test-samples

.PHONY: e2e
e2e: envtest-assets ## Run the end-to-end tests: serve over HTTP, and the operator scenario against a local control plane.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) test ./test/e2e/... -count=1 -v

MEASURE_REPORT ?= $(LOCALBIN)/measure.txt
.PHONY: measure
measure: envtest-assets ## Measure propagation (20 applies) and webhook memory with a 1,000,000-entry list; see docs/operator.md.
	rm -f $(MEASURE_REPORT)
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" FRIENDGATE_E2E_MEMORY=1 FRIENDGATE_E2E_REPORT=$(MEASURE_REPORT) \
	  $(GO) test ./test/e2e/cluster/ -count=1 -v -timeout 20m
	cat $(MEASURE_REPORT)

.PHONY: local-cluster
local-cluster: envtest-assets build ## Run a local control plane (etcd + kube-apiserver) with the CRD; prints how to start the roles.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) run ./hack/localcluster --dir $(LOCALBIN)/local

.PHONY: test-samples
test-samples: build ## Run friendgate test on the shipped samples.
	$(LOCALBIN)/friendgate test config/samples

FUZZ_TIME ?= 10s
.PHONY: fuzz
fuzz: ## Run each fuzz target briefly.
	@for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$target ($(FUZZ_TIME))"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZ_TIME) || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## Run the benchmarks (numbers go to docs/benchmarks.md).
	$(GO) test ./internal/policy/ -run '^$$' -bench . -benchmem

.PHONY: envtest-assets
envtest-assets: ## Build etcd and kube-apiserver from the Go module proxy into bin/k8s (cached).
	hack/envtest-assets.sh >/dev/null

##@ Build

.PHONY: build
build: ## Build bin/friendgate.
	$(GO) build -o $(LOCALBIN)/friendgate .

.PHONY: run
run: build ## Serve the samples locally (friendgate serve --policies config/samples).
	$(LOCALBIN)/friendgate serve --policies config/samples

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
