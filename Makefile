# leader-election: build, test, lint, demo and benchmarks. `make help` lists the targets.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

MODULE  := github.com/leader-election/leader-election
VERSION ?= v0.1.0
# The same flags build the binaries here and in Dockerfile.webhook / Dockerfile.elector (a test checks they agree).
LDFLAGS := -s -w -X $(MODULE)/pkg/version.Version=$(VERSION)
GOBUILD := CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)"

STATICCHECK_VERSION := v0.8.2
HELM_VERSION        := v3.22.0
# kustomize v5.8.2 is the newest v5 that builds with Go 1.26 (v5.8.3 needs Go 1.27).
KUSTOMIZE_VERSION   := v5.8.2
# promtool tests the chart's alert rules; Prometheus v3.16.0 is tagged v0.316.0 as a Go module (it needs Go >= 1.26.7).
PROMTOOL_VERSION    := v0.316.0
TOOLS_BIN := $(CURDIR)/bin/tools

# The local control plane (kube-apiserver, kube-controller-manager, etcd) built from source once and cached
# outside the clone; an existing KUBEBUILDER_ASSETS that holds them is used as it is. Evaluated inside each
# recipe, so a failed build stops make with the builder's message.
ASSETS := assets=$$(hack/control-plane.sh)

.PHONY: help build images node test test-unit lint fuzz soak demo bench control-plane tools docker-build clean generate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: bin/webhook bin/elector ## build the webhook and the elector (static binaries in bin/)

bin/webhook bin/elector: FORCE
	$(GOBUILD) -o $@ ./cmd/$(@F)

FORCE:

images: build ## write the webhook and elector images as tarballs in bin/images (no Docker; for kind, k3d, ctr)
	go run ./hack/images --bin bin --out bin/images --version $(VERSION)

node: ## build (first run) and print the real test node's kubelet, kube-proxy and kube-scheduler directory
	@hack/node-binaries.sh

control-plane: ## build (first run) and print the local control plane's directory
	@hack/control-plane.sh

tools: $(TOOLS_BIN)/helm $(TOOLS_BIN)/kustomize $(TOOLS_BIN)/staticcheck $(TOOLS_BIN)/promtool ## install the test tools into bin/tools

$(TOOLS_BIN)/helm:
	GOBIN=$(TOOLS_BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(TOOLS_BIN)/kustomize:
	GOBIN=$(TOOLS_BIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

$(TOOLS_BIN)/staticcheck:
	GOBIN=$(TOOLS_BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(TOOLS_BIN)/promtool:
	GOBIN=$(TOOLS_BIN) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

# The end-to-end suite runs on a real node (kubelet, containerd, kube-proxy), which needs root: on a machine that
# cannot run one it fails and says why. Its first run builds the node's binaries while the other packages test.
test: tools ## run every test: unit, integration against the local control plane, chart and end to end (root)
	$(ASSETS); \
	PATH="$(TOOLS_BIN):$$PATH" KUBEBUILDER_ASSETS="$$assets" go test -count=1 -timeout 30m ./...

test-unit: ## run the tests that need no control plane
	go test -count=1 -short ./pkg/...

generate: ## rewrite admission mode "policy"'s policies (chart and config/injection-policies) from pkg/inject
	go run ./hack/policygen

lint: $(TOOLS_BIN)/staticcheck ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n "$$out" ]]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	$(TOOLS_BIN)/staticcheck ./...

FUZZTIME ?= 60s
fuzz: ## run every fuzz target for FUZZTIME each
	go test ./pkg/inject -run '^$$' -fuzz '^FuzzMutate$$' -fuzztime $(FUZZTIME)
	go test ./pkg/webhook -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)

DURATION ?= 30m
soak: ## run the elector fault soak for DURATION (default 30m; make test runs 150s); SEED=n replays a run, ONLY=word,... picks fault kinds
	$(ASSETS); \
	KUBEBUILDER_ASSETS="$$assets" go test -count=1 -timeout 0 -v -run '^TestFaultSoak$$' ./cmd/elector \
		-args -soak.duration=$(DURATION) $(if $(SEED),-soak.seed=$(SEED)) $(if $(ONLY),-soak.only="$(ONLY)")

demo: images tools ## run the demo on a real node where the machine allows it, else on the stand-in (KEEP=1 leaves it up)
	$(ASSETS); \
	PATH="$(TOOLS_BIN):$$PATH" KUBEBUILDER_ASSETS="$$assets" go run ./test/demo --bin $(CURDIR)/bin --images $(CURDIR)/bin/images $(if $(KEEP),--keep)

bench: build ## run the benchmarks and write docs/benchmarks.md
	$(ASSETS); \
	KUBEBUILDER_ASSETS="$$assets" go run ./test/bench --bin $(CURDIR)/bin --out docs/benchmarks.md

docker-build: ## build the images (needs a Docker engine)
	docker build -f Dockerfile.webhook --build-arg VERSION=$(VERSION) -t leader-election/webhook:$(VERSION) .
	docker build -f Dockerfile.elector --build-arg VERSION=$(VERSION) -t leader-election/elector:$(VERSION) .

clean: ## remove build output (the control plane cache stays)
	rm -rf bin
