#!/usr/bin/env bash
# Runs fuzz targets one after the other (the machine has 2 cores; one fuzzer at a time).
# Usage: fuzz/run-all.sh [SECONDS_PER_TARGET] [TARGET...]
# Keeps going after a crash (fork mode) so one known bug does not hide the next;
# crashes land in fuzz/artifacts/<target>/, see fuzz/triage.sh.
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-120}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(formats detect redact parquet)
fi
[ -d corpus ] || ./seed-corpora.sh
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
# Build once, then run the binaries directly: `cargo fuzz run` would rebuild whenever
# alf-formats changed in between, and its output is harder to follow in fork mode.
cargo fuzz build || exit 1
bin=target/x86_64-unknown-linux-gnu/release
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "=== $t (${secs}s)"
  "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=4096 -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    "corpus/$t" > "artifacts/$t.log" 2>&1
  grep -E "^#[0-9]+: cov" "artifacts/$t.log" | tail -1
  echo "crashes so far: $(ls "artifacts/$t" | grep -cE '^(crash|timeout|oom)-')"
done
./triage.sh
