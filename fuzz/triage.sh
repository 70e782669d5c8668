#!/usr/bin/env bash
# Groups crash artifacts by where they panic: one line per distinct location, with the
# smallest input that reaches it. Usage: fuzz/triage.sh [TARGET...]
set -uo pipefail
cd "$(dirname "$0")"
bin=target/x86_64-unknown-linux-gnu/release
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=($(ls artifacts 2>/dev/null))
for t in "${targets[@]}"; do
  [ -x "$bin/$t" ] || continue
  declare -A smallest=()
  for a in $(ls -S -r artifacts/"$t"/{crash,timeout,oom,slow-unit}-* 2>/dev/null); do
    where=$("$bin/$t" -runs=1 "$a" 2>&1 | grep -m1 -oE "panicked at [^ ]+|ERROR: AddressSanitizer: [a-z-]+|ERROR: libFuzzer: [a-z-]+" )
    where="${where:-no longer fails}"
    [ -n "${smallest[$where]:-}" ] || smallest[$where]="$a"
  done
  for w in "${!smallest[@]}"; do
    echo "$t: $w  (smallest: ${smallest[$w]}, $(stat -c %s "${smallest[$w]}") bytes)"
  done
  unset smallest
done
