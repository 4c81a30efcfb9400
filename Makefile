# Tenancy — the two commands a new user needs are `make run` and `make test`.

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 10s
STATICCHECK_VERSION ?= v0.8.2
DUPL_VERSION ?= v1.1.0
# dupl reports code repeated in syntax-tree shape; 75 tokens is about six to
# ten lines of Go, the size at which a second copy is worth a shared helper.
DUPL_TOKENS ?= 75

.PHONY: run test test-short test-deploy lint fmt vet staticcheck dupl fuzz bench build ci clean

## run: the whole system in one process (embedded JetStream, local PostgreSQL)
run:
	$(GO) run ./cmd/tenancy dev

## test: every test, with the race detector, against real JetStream and PostgreSQL;
## then the cluster system test, verbose, so that CI prints what it killed and verified;
## and the deploy module's checks (test-deploy)
test: test-deploy
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list $(PKGS) | grep -v '/systest$$')
	$(GO) test -count=1 -timeout 15m -v ./systest

## test-short: skip the tests that start processes
test-short: test-deploy
	$(GO) test -short -count=1 $(PKGS)

## test-deploy: the compose files and Kubernetes manifests, checked without Docker or
## a cluster; deploy is a module of its own (its tooling stays out of the binaries'
## dependencies), so ./... in the root does not reach it
test-deploy:
	cd deploy && $(GO) test -count=1 ./...

## lint: gofmt, go vet and staticcheck must all be clean, in the root and deploy modules,
## and no code repeated beyond DUPL_TOKENS (dupl)
lint: fmt vet staticcheck dupl

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)
	cd deploy && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

dupl:
	@out=$$($(GO) run github.com/mibk/dupl@$(DUPL_VERSION) -t $(DUPL_TOKENS) -plumbing $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "repeated code (dupl -t $(DUPL_TOKENS)); share it:"; echo "$$out"; exit 1; fi

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./pkg/events
	$(GO) test -run '^$$' -fuzz '^FuzzCanonicalEnvelope$$' -fuzztime $(FUZZTIME) ./pkg/events
	$(GO) test -run '^$$' -fuzz '^FuzzCreateInput$$' -fuzztime $(FUZZTIME) ./internal/httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzPatchInput$$' -fuzztime $(FUZZTIME) ./internal/httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzQueryString$$' -fuzztime $(FUZZTIME) ./internal/httpapi

## bench: measure against same-run baselines and print a table
bench:
	$(GO) run ./bench

## build: every binary into ./bin
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./cmd/...

## ci: what .ci/run runs
ci: lint test fuzz

clean:
	rm -rf bin .tenancy
