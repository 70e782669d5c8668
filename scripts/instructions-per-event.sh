#!/usr/bin/env bash
# Instructions per event of `parse --format KIND` (issue 8's measure, see
# crates/alf-bench/README.md): callgrind counts the instructions of the whole run on a
# generated gzip file of LARGE records and of SMALL records; the difference divided by
# the events between them leaves start-up and first-sight costs out. Instruction counts
# do not depend on what else the machine is doing, so binaries built at different
# times compare, and a shared machine does not blur them.
#
# Usage: scripts/instructions-per-event.sh KIND BINARY [SMALL [LARGE]]
#   KIND     an `alf-bench gen` kind (vpc-flow-custom is parsed as vpc-flow)
#   BINARY   an aws-log-forwarder binary (e.g. target/release/aws-log-forwarder)
#   SMALL, LARGE  records in the two files (default 1000 and 6000; seed 5)
# Environment: ALF_BENCH (default target/release/alf-bench), IPE_DIR where the
# generated files are kept between runs (default /tmp/alf-ipe).
set -euo pipefail
kind=${1:?usage: $0 KIND BINARY [SMALL [LARGE]]}
binary=${2:?usage: $0 KIND BINARY [SMALL [LARGE]]}
small=${3:-1000}
large=${4:-6000}
gen=${ALF_BENCH:-target/release/alf-bench}
dir=${IPE_DIR:-/tmp/alf-ipe}
format=$kind
[ "$kind" = vpc-flow-custom ] && format=vpc-flow
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
mkdir -p "$dir"

# Prints "events instructions" for one file.
measure() {
  local file=$dir/$kind-$1.gz out=$dir/callgrind.$$.out events
  [ -f "$file" ] || "$gen" gen "$kind" --records "$1" --seed 5 --gzip -o "$file" >/dev/null 2>&1
  # A binary that does not know the format prints nothing: caught below.
  events=$( (valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" parse --format "$format" "$file" 2>/dev/null || true) | wc -l)
  echo "$events $(awk '/^summary:/ {print $2}' "$out" 2>/dev/null || echo 0)"
  rm -f "$out"
}

read -r small_events small_ir < <(measure "$small")
read -r large_events large_ir < <(measure "$large")
if [ "$large_events" -le "$small_events" ]; then
  echo "$kind: no more events in $large records than in $small (is $format a format of $binary?)" >&2
  exit 1
fi
echo "$kind $binary $(( (large_ir - small_ir) / (large_events - small_events) ))"
