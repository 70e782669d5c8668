#!/usr/bin/env bash
# test.sh - THE one command that runs every check of this repository (README and CI call it).
#
# Usage: scripts/test.sh [extra arguments for the test runner, e.g. a test name filter]
#
# Steps (all of them run, so one report shows every problem; the exit status is non-zero
# when any failed):
#   1. cargo fmt --all -- --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   2b. scripts/check-deploy.sh --install-tools: the deployment files without a container
#      engine (docker compose config, cfn-lint, hadolint, shellcheck, the rendered
#      Kubernetes/KEDA manifests against their schemas, promtool on the alert rules and
#      the dashboard's queries), strict: a missing
#      linter fails instead of being skipped
#   3. build the tests (before LocalStack starts, so it does not idle through a cold build)
#   4. scripts/localstack.sh install (idempotent; needs python3.11), then start a private
#      LocalStack on a free loopback port (stopped again on exit, whatever happens)
#   5. cargo test --workspace (unit, integration and doc tests); the integration tests
#      find LocalStack through ALF_TEST_AWS_ENDPOINT. cargo test rather than nextest by
#      default: nextest runs every test in a process of its own, so each test that parses
#      user agents compiles uap-core's ~1,200 regexes again (~10 s in a debug build):
#      ~145 s instead of ~30 s for the whole suite on 2 cores.
#
# The private LocalStack runs from .localstack/test-run.XXXXXX with the venv of .localstack
# (LS_VENV), so a LocalStack you started yourself with scripts/localstack.sh (e.g. for
# scripts/demo.sh) is left alone. Its log is copied to target/test-logs/localstack.log.
#
# Environment:
#   ALF_TEST_THREADS   concurrent tests (default: 4; the integration tests mostly wait)
#   ALF_SKIP_LINT=1    skip fmt, clippy and the deploy-file checks (quicker local iterations)
#   ALF_NEXTEST=1      run the tests with cargo nextest (+ cargo test --doc) instead
#   CARGO_TERM_COLOR   as usual
#   CARGO_INCREMENTAL  0 unless set: this script builds everything once, and incremental
#                      state roughly doubles the size of target/ (disk, not time, is what
#                      a clean CI machine runs short of)
set -euo pipefail
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LS_BASE=$ROOT/.localstack
LOG_DIR=$ROOT/target/test-logs
THREADS=${ALF_TEST_THREADS:-4}
mkdir -p "$LOG_DIR"

say() { printf '\n==> test.sh: %s\n' "$*" >&2; }

declare -a STEP_NAMES=() STEP_RESULTS=() STEP_SECONDS=()
FAILED=0
TESTS_PASSED=0
TESTS_FAILED=0
TESTS_SKIPPED=0

# run_step NAME COMMAND...: runs the command, records PASS/FAIL and its duration.
run_step() {
  local name=$1 t0=$SECONDS rc=0
  shift
  say "$name: $*"
  "$@" || rc=$?
  STEP_NAMES+=("$name")
  STEP_SECONDS+=($((SECONDS - t0)))
  if [ "$rc" -eq 0 ]; then
    STEP_RESULTS+=(PASS)
  else
    STEP_RESULTS+=("FAIL (exit $rc)")
    FAILED=1
  fi
  return 0
}

# ------------------------------------------------------------------------------ LocalStack
RUN_HOME=
stop_localstack() {
  if [ -n "$RUN_HOME" ] && [ -d "$RUN_HOME" ]; then
    # Its state is thrown away: no need to wait long for a clean shutdown.
    LS_STOP_TIMEOUT=${LS_STOP_TIMEOUT:-10} scripts/localstack.sh stop "$RUN_HOME" >&2 || true
    cp "$RUN_HOME/localstack.log" "$LOG_DIR/localstack.log" 2>/dev/null || true
    rm -rf "$RUN_HOME"
  fi
  RUN_HOME=
}
cleanup() {
  local rc=$?
  stop_localstack
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_localstack() {
  scripts/localstack.sh install "$LS_BASE" || return 1
  # Private state, pid and log (a LocalStack the developer runs from .localstack is left
  # alone); the venv installed in .localstack is shared.
  RUN_HOME=$(mktemp -d "$LS_BASE/test-run.XXXXXX")
  local port endpoint tries=0
  while :; do
    port=$(free_port)
    if endpoint=$(LS_VENV=$LS_BASE/venv LS_PORT=$port scripts/localstack.sh start "$RUN_HOME"); then
      break
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 3 ] || return 1
  done
  export ALF_TEST_AWS_ENDPOINT=$endpoint
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
    AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  # Keep whatever the developer's shell points at (profiles, real endpoints) out of the tests.
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
  say "LocalStack for the tests: $ALF_TEST_AWS_ENDPOINT"
}

# ------------------------------------------------------------------------------ tests
# Adds the counts of a runner's output (cargo test "test result:" lines or the nextest
# "Summary" line) to the totals.
count_results() {
  local counts p f s
  counts=$(awk '
    /^ *Summary \[/ {            # nextest: "Summary [ 1.2s] 9 tests run: 8 passed, 1 failed, 0 skipped"
      nx = 1; np = nf = ns = 0
      for (i = 2; i <= NF; i++) {
        w = $i; gsub(/[,;]/, "", w)
        if (w == "passed") np = $(i - 1)
        if (w == "failed") nf = $(i - 1)
        if (w == "skipped") ns = $(i - 1)
      }
    }
    /^test result: / {            # cargo test: "test result: ok. 5 passed; 0 failed; 1 ignored; ..."
      for (i = 2; i <= NF; i++) {
        w = $i; gsub(/[,;]/, "", w)
        if (w == "passed") cp += $(i - 1)
        if (w == "failed") cf += $(i - 1)
        if (w == "ignored") cs += $(i - 1)
      }
    }
    END { if (nx) print np + 0, nf + 0, ns + 0; else print cp + 0, cf + 0, cs + 0 }
  ' "$1")
  read -r p f s <<< "$counts"
  TESTS_PASSED=$((TESTS_PASSED + p))
  TESTS_FAILED=$((TESTS_FAILED + f))
  TESTS_SKIPPED=$((TESTS_SKIPPED + s))
}

# run_tests LOGNAME COMMAND...: runs a test runner with its output shown and kept.
# (Called through run_step, so errexit is off here and the status is returned as is.)
run_tests() {
  local log=$LOG_DIR/$1.log rc
  shift
  "$@" "${EXTRA_ARGS[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  count_results "$log"
  return "$rc"
}

EXTRA_ARGS=("$@")
T0=$SECONDS

if [ "${ALF_SKIP_LINT:-0}" != 1 ]; then
  run_step "cargo fmt" cargo fmt --all -- --check
  run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
  run_step "deploy files" env ALF_CHECK_STRICT=1 scripts/check-deploy.sh --install-tools
fi

use_nextest() { [ "${ALF_NEXTEST:-0}" = 1 ] && cargo nextest --version >/dev/null 2>&1; }

# Build the tests before LocalStack starts, so it does not idle through a cold build.
if use_nextest; then
  run_step "build tests" cargo nextest run --workspace --no-run
else
  run_step "build tests" cargo test --workspace --no-run
fi

run_step "start LocalStack" start_localstack
if [ -n "${ALF_TEST_AWS_ENDPOINT:-}" ]; then
  if use_nextest; then
    run_step "tests (nextest)" run_tests nextest \
      cargo nextest run --workspace --no-fail-fast --test-threads "$THREADS" \
      --failure-output final
    # nextest does not run doc tests.
    EXTRA_ARGS=()
    run_step "doc tests" run_tests doctests cargo test --workspace --doc
  else
    run_step "tests (cargo test)" run_tests cargo-test \
      cargo test --workspace --no-fail-fast -- --test-threads "$THREADS"
  fi
else
  STEP_NAMES+=("tests"); STEP_RESULTS+=("NOT RUN (no LocalStack)"); STEP_SECONDS+=(0)
  FAILED=1
fi

# Stopped here rather than only by the exit trap, so the summary stays the last output.
stop_localstack

# ------------------------------------------------------------------------------ summary
printf '\n==================== test.sh summary ====================\n'
for i in "${!STEP_NAMES[@]}"; do
  printf '  %-22s %-20s %5ss\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_SECONDS[$i]}"
done
printf '  %-22s %-20s %5ss\n' "total" "$([ "$FAILED" = 0 ] && echo PASS || echo FAIL)" "$((SECONDS - T0))"
printf '  logs: %s\n' "${LOG_DIR#"$ROOT"/}"
printf '=========================================================\n'
printf 'tests: %d passed, %d failed, %d skipped\n' "$TESTS_PASSED" "$TESTS_FAILED" "$TESTS_SKIPPED"
exit "$FAILED"
