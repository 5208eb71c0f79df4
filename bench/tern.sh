# Tern's side of bench/compare, sourced by it. Everything that depends on
# Tern's CLI and config format is here, so that it is one place to adjust
# while those settle. Functions return non-zero when Tern cannot run; the
# compare script then reports Tern as "n/a".
#
# Assumed (from the lead's plan, see docs/performance.md):
#   tern serve --config FILE                 runs in the foreground until SIGTERM
#   tern domain add --config FILE DOMAIN
#   tern user add --config FILE --password-stdin ADDRESS   (password on stdin)
#   [listen] smtp/imap/pop3 in the config are host:port

TERN_CONFIG=${TERN_CONFIG:-$ROOT/bench/tern-bench.toml}
# Read an address or path out of the config so there is one source of truth.
tern_conf() { # tern_conf KEY [SECTION]
  awk -v key="$1" -v sect="${2:-}" '
    /^\[/ { cur = $0; gsub(/[\[\] ]/, "", cur); next }
    cur == sect && $1 == key { v = $0; sub(/^[^=]*= */, "", v); gsub(/"/, "", v); print v; exit }
  ' "$TERN_CONFIG"
}
TERN_SMTP=${TERN_SMTP:-$(tern_conf smtp listen)}
TERN_IMAP=${TERN_IMAP:-$(tern_conf imap listen)}
TERN_POP3=${TERN_POP3:-$(tern_conf pop3 listen)}
TERN_DATA=${TERN_DATA:-$(tern_conf data_dir)}
TERN_USERS='bench%d@bench.test'   # login names: full addresses
TERN_BIN=$OUT/tern
TERN_PID=

# tern_build compiles the server. The brief's command is
# `go run ./cmd/tern serve --config ...`; a built binary is the same code,
# and its PID is the server's own (go run's PID would be the go tool's),
# which the memory measurement needs.
tern_build() {
  (cd "$ROOT" && go build -o "$TERN_BIN" ./cmd/tern) >"$OUT/tern-build.log" 2>&1
}

# tern_setup creates a fresh data directory with the domain and users.
tern_setup() {
  rm -rf "$TERN_DATA" && mkdir -p "$TERN_DATA" || return 1
  "$TERN_BIN" domain add --config "$TERN_CONFIG" bench.test >>"$OUT/tern-setup.log" 2>&1 || return 1
  local i
  for i in $(seq 1 "$NUSERS"); do
    echo pass | "$TERN_BIN" user add --config "$TERN_CONFIG" --password-stdin "bench$i@bench.test" \
      >>"$OUT/tern-setup.log" 2>&1 || return 1
  done
}

tern_start() {
  "$TERN_BIN" serve --config "$TERN_CONFIG" >"$OUT/tern-serve.log" 2>&1 &
  TERN_PID=$!
  wait_port "$TERN_SMTP" 30 && wait_port "$TERN_IMAP" 5 && wait_port "$TERN_POP3" 5
}

# tern_restart gives a fresh process on the same data (for the memory rows).
tern_restart() {
  tern_stop
  tern_start
}

tern_stop() {
  [ -n "$TERN_PID" ] || return 0
  kill "$TERN_PID" 2>/dev/null
  wait "$TERN_PID" 2>/dev/null
  TERN_PID=
}

# tern_seed fills the mailboxes over SMTP (Tern has no LMTP door).
tern_seed() {
  "$LOAD" seed -smtp "$TERN_SMTP" -users "$TERN_USERS:1-$NUSERS" -count "$SEED_COUNT" \
    -mbox "$MBOX" >"$OUT/tern-seed.log" 2>&1
}

# tern_up runs all of the above; on failure it says why and leaves Tern down.
tern_up() {
  if [ ! -d "$ROOT/cmd/tern" ]; then echo "tern: cmd/tern does not exist yet"; return 1; fi
  tern_build || { echo "tern: build failed (see $OUT/tern-build.log)"; return 1; }
  tern_setup || { echo "tern: setup failed (see $OUT/tern-setup.log)"; return 1; }
  tern_start || { echo "tern: did not come up on $TERN_SMTP/$TERN_IMAP/$TERN_POP3 (see $OUT/tern-serve.log)"; tern_stop; return 1; }
  tern_seed || { echo "tern: seeding failed (see $OUT/tern-seed.log)"; }
  return 0
}
