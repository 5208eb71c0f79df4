# `make test` is the whole test suite (README.md); CI runs it from .ci/run.
GO ?= go
PKGS := ./...

.PHONY: test vet fmt-check build fuzz bench crash

test: fmt-check vet
	$(GO) test -race -shuffle=on -timeout 20m $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

build:
	$(GO) build -o bin/ ./cmd/...

# Long fuzzing of every Fuzz target: FUZZTIME per target (default 5m).
FUZZTIME ?= 5m
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/store/sqlite

# The crash test's long mode: 200 SIGKILL rounds.
crash:
	TERN_CRASH_ROUNDS=200 $(GO) test -run TestCrash -timeout 60m -v ./test/
