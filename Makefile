# `make test` is the whole test suite (README.md); CI runs it from .ci/run.
GO ?= go
PKGS := ./...

.PHONY: test vet fmt-check build fuzz bench crash

# go test runs every Fuzz target over its kept corpus (seeds and past
# findings in testdata/fuzz); `make fuzz` explores beyond it.
test: fmt-check vet
	$(GO) test -race -shuffle=on -timeout 20m $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

build:
	$(GO) build -o bin/ ./cmd/...

# Every Fuzz target for FUZZTIME each (default 5m), keeping what it finds
# in testdata/fuzz.
FUZZTIME ?= 5m
fuzz:
	@for f in $$(grep -l '^func Fuzz' $$(git ls-files '*_test.go')); do \
	  pkg=./$$(dirname $$f); \
	  for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "== $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/store/sqlite

# The crash test's long mode: 200 SIGKILL rounds.
crash:
	TERN_CRASH_ROUNDS=200 $(GO) test -run TestCrash -timeout 60m -v ./test/
