#!/usr/bin/env bash
# localstack.sh - LocalStack for aws-log-forwarder development and tests, WITHOUT Docker.
#
# LocalStack (community, localstack-core 4.13.1) runs as a plain Python process on loopback,
# from a virtualenv built from the pinned list in scripts/localstack-requirements.txt.
#
# Usage: scripts/localstack.sh COMMAND [DIR]
#   install [DIR]   create or refresh DIR/venv (idempotent; ~285 MB, ~30 s from PyPI)
#   start   [DIR]   start in the background, wait until healthy, print the endpoint URL
#   stop    [DIR]   stop the instance started from DIR
#   status  [DIR]   print pid, endpoint and health JSON; exit 1 when not running
#   env     [DIR]   print `export NAME=value` lines for AWS SDKs and the aws CLI:
#                       eval "$(scripts/localstack.sh env)"
#   aws ARGS...     run the venv's aws CLI against the instance in $LS_HOME (default DIR),
#                   e.g. scripts/localstack.sh aws sqs list-queues
#   help            this text
#
# DIR defaults to $LS_HOME, else <repo root>/.localstack. The venv, LocalStack's state, the
# log and the pid file all live under DIR; parallel instances need distinct DIRs and ports.
#
# Settings (environment):
#   LS_PORT=4566           gateway port
#   LS_BIND=127.0.0.1      listen address (0.0.0.0 to reach it from containers; clients
#                          on this host still use 127.0.0.1)
#   LS_SERVICES=s3,sqs,sns,iam,sts,cloudformation
#   LS_VENV=DIR/venv       the virtualenv; point several DIRs at one venv to run parallel
#                          instances without installing it again
#   LS_PYTHON              CPython 3.11 to build the venv with (default: python3.11, python3)
#   LS_START_TIMEOUT=90    seconds to wait for health before giving up
#   LS_STOP_TIMEOUT=30     seconds between SIGTERM and SIGKILL
#   LS_PIP_ARGS            extra arguments for pip install (index mirror, --no-cache-dir, ...)
# Other LocalStack variables (DEBUG=1, ...) set in the environment pass through to it.
#
# Host-mode traps this script takes care of (LocalStack assumes it runs in its own image):
#   - It treats any host with /.dockerenv as its container and deletes /tmp/localstack at
#     every start and stop, other instances' files included:
#     OVERRIDE_IN_DOCKER=0 and a private FILESYSTEM_ROOT=DIR/state.
#   - The default (twisted) server binds 0.0.0.0 whatever GATEWAY_LISTEN says:
#     GATEWAY_SERVER=hypercorn binds only LS_BIND.
#   - Queue URLs default to *.localhost.localstack.cloud, which needs DNS we may not have:
#     SQS_ENDPOINT_STRATEGY=path and LOCALSTACK_HOST=127.0.0.1:LS_PORT give http://127.0.0.1:PORT/...
#   - Without a prebuilt service catalog the first request costs ~4 s and ~400 MB of RSS:
#     `install` runs `python -m localstack.aws.spec` once.
# Client-side traps (not fixable here):
#   - S3 clients must use path-style addressing (Rust SDK: force_path_style(true)).
#   - awscli v1 ignores AWS_ENDPOINT_URL for `aws sqs`: always pass --endpoint-url
#     (the `aws` command of this script does).
#   - Big objects spill to /tmp/localstack-s3-storage, shared by all instances: parallel
#     test runs must use distinct bucket names.
#   - Nothing persists across a restart; IAM policies are stored but not enforced.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS=$ROOT/scripts/localstack-requirements.txt
LS_VERSION=4.13.1

cmd=${1:-help}
[ $# -gt 0 ] && shift
if [ "$cmd" = aws ]; then
  LS_HOME=${LS_HOME:-$ROOT/.localstack}
else
  [ $# -le 1 ] || { echo "localstack.sh: too many arguments (see: $0 help)" >&2; exit 2; }
  LS_HOME=${1:-${LS_HOME:-$ROOT/.localstack}}
fi
LS_HOME=$(realpath -m -- "$LS_HOME")
LS_PORT=${LS_PORT:-4566}
LS_BIND=${LS_BIND:-127.0.0.1}
LS_SERVICES=${LS_SERVICES:-s3,sqs,sns,iam,sts,cloudformation}
LS_START_TIMEOUT=${LS_START_TIMEOUT:-90}
case $LS_BIND in
  0.0.0.0 | :: | "") CLIENT_HOST=127.0.0.1 ;;
  *) CLIENT_HOST=$LS_BIND ;;
esac
LS_STOP_TIMEOUT=${LS_STOP_TIMEOUT:-30}

VENV=$(realpath -m -- "${LS_VENV:-$LS_HOME/venv}")
PY=$VENV/bin/python
STATE=$LS_HOME/state                 # LocalStack's FILESYSTEM_ROOT
PIDFILE=$LS_HOME/localstack.pid
ENDPOINTFILE=$LS_HOME/localstack.endpoint
LOGFILE=$LS_HOME/localstack.log
STAMP=$VENV/.alf-localstack-stamp

say() { echo "localstack.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# ------------------------------------------------------------------------------- install

find_python() {
  local c
  for c in "${LS_PYTHON:-}" python3.11 python3; do
    if [ -z "$c" ] || ! command -v "$c" >/dev/null 2>&1; then continue; fi
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$c"
      return 0
    fi
  done
  die "CPython 3.11 not found (set LS_PYTHON); the pinned set is only known to work on 3.11"
}

cmd_install() {
  [ -f "$REQUIREMENTS" ] || die "missing $REQUIREMENTS"
  mkdir -p "$LS_HOME"
  local py want
  py=$(find_python)
  want="$("$py" -c 'import platform; print(platform.python_version())') $(sha256sum "$REQUIREMENTS" | cut -c1-16)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$PY" -c 'import localstack' 2>/dev/null; then
    say "venv is up to date: $VENV"
  else
    [ -z "$(running_pid)" ] || die "LocalStack is running from $LS_HOME; stop it before reinstalling"
    say "creating $VENV with $py ($(grep -cv '^\s*\(#\|$\)' "$REQUIREMENTS") pinned packages)"
    rm -rf "$VENV" "$STATE"
    "$py" -m venv "$VENV"
    # --no-deps: the file is a complete closure; `pip check` proves it is consistent.
    # shellcheck disable=SC2086  # LS_PIP_ARGS is a word list on purpose
    "$PY" -m pip install --disable-pip-version-check --quiet --no-deps ${LS_PIP_ARGS:-} -r "$REQUIREMENTS"
    "$PY" -m pip check >/dev/null || { "$PY" -m pip check >&2 || true; die "pip check failed"; }
    echo "$want" > "$STAMP"
  fi
  prebuild_catalog
  say "ready: localstack-core $("$PY" -c 'import importlib.metadata as m; print(m.version("localstack-core"))'), venv $(du -sh "$VENV" | cut -f1)"
}

# LocalStack keeps its service catalog cache under FILESYSTEM_ROOT: build it once per DIR, or
# copy it from the DIR that owns a shared LS_VENV.
prebuild_catalog() {
  local dest=$STATE/usr/lib/localstack shared
  compgen -G "$dest/service-catalog-*" >/dev/null && return 0
  mkdir -p "$dest"
  shared=$(dirname -- "$VENV")/state/usr/lib/localstack
  if [ "$shared" != "$dest" ] && compgen -G "$shared/service-catalog-*" >/dev/null; then
    cp -p "$shared"/service-catalog-* "$dest"/
    return 0
  fi
  say "prebuilding the service catalog in $STATE"
  (cd "$LS_HOME" && OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$STATE" "$PY" -m localstack.aws.spec >/dev/null) \
    || die "python -m localstack.aws.spec failed"
}

# ------------------------------------------------------------------------------- runtime

running_pid() {  # print the pid from PIDFILE if it is a live LocalStack; print nothing otherwise
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'localstack\.runtime\.main' || return 0
  echo "$pid"
}

endpoint() {  # the endpoint of the running instance, else the one LS_PORT would give
  if [ -n "$(running_pid)" ] && [ -s "$ENDPOINTFILE" ]; then cat "$ENDPOINTFILE"; else echo "http://$CLIENT_HOST:$LS_PORT"; fi
}

# Exit 0 when LocalStack reports READY and every service in LS_SERVICES is available/running.
healthy() {
  "$PY" - "$1" "$LS_SERVICES" <<'PYEOF' 2>/dev/null
import json, sys, urllib.request
ep, wanted = sys.argv[1], [s for s in sys.argv[2].split(",") if s.strip()]
get = lambda p: json.load(urllib.request.urlopen(ep + p, timeout=2))
services = get("/_localstack/health").get("services", {})
ready = get("/_localstack/init").get("completed", {}).get("READY")
sys.exit(0 if ready and all(services.get(s.strip()) in ("available", "running") for s in wanted) else 1)
PYEOF
}

port_in_use() {
  "$PY" - "$CLIENT_HOST" "$LS_PORT" <<'PYEOF'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PYEOF
}

cmd_start() {
  [ -x "$PY" ] || die "no venv in $LS_HOME; run: $0 install $LS_HOME"
  local pid ep="http://$CLIENT_HOST:$LS_PORT"
  pid=$(running_pid)
  if [ -n "$pid" ]; then
    ep=$(endpoint)
    healthy "$ep" || die "pid $pid (from $PIDFILE) is alive but not healthy; run: $0 stop $LS_HOME"
    say "already running (pid $pid)"
    echo "$ep"
    return 0
  fi
  rm -f "$PIDFILE" "$ENDPOINTFILE"
  port_in_use && die "port $LS_PORT is already in use; pick another LS_PORT"
  mkdir -p "$LS_HOME"
  prebuild_catalog
  # Community LocalStack keeps nothing across restarts anyway; drop the old scratch files.
  rm -rf "$STATE/tmp" "$STATE/var/lib/localstack"
  mkdir -p "$STATE"
  : > "$LOGFILE"
  # The subshell is not a process-group leader (no job control in scripts), so setsid does
  # not fork and $! stays the pid of python: its own session keeps it safe from the
  # caller's Ctrl-C, and stop can signal its whole process group.
  (
    cd "$LS_HOME"
    export GATEWAY_LISTEN="$LS_BIND:$LS_PORT" SERVICES="$LS_SERVICES" EAGER_SERVICE_LOADING=1 \
      OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$STATE" \
      GATEWAY_SERVER="${GATEWAY_SERVER:-hypercorn}" \
      SQS_ENDPOINT_STRATEGY="${SQS_ENDPOINT_STRATEGY:-path}" \
      LOCALSTACK_HOST="${LOCALSTACK_HOST:-$CLIENT_HOST:$LS_PORT}" \
      DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1
    exec setsid "$PY" -m localstack.runtime.main >>"$LOGFILE" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" > "$PIDFILE"
  echo "$ep" > "$ENDPOINTFILE"
  local t0=$SECONDS
  until healthy "$ep"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDFILE" "$ENDPOINTFILE"
      tail -n 40 "$LOGFILE" >&2
      die "LocalStack exited while starting (log: $LOGFILE)"
    fi
    if (( SECONDS - t0 >= LS_START_TIMEOUT )); then
      tail -n 40 "$LOGFILE" >&2
      cmd_stop || true
      die "not healthy after ${LS_START_TIMEOUT}s (log: $LOGFILE)"
    fi
    sleep 0.2
  done
  say "LocalStack $LS_VERSION (pid $pid) healthy after $((SECONDS - t0))s at $ep; services $LS_SERVICES; log $LOGFILE"
  echo "$ep"
}

cmd_stop() {
  local pid
  pid=$(running_pid)
  if [ -z "$pid" ]; then
    rm -f "$PIDFILE" "$ENDPOINTFILE"
    say "not running ($LS_HOME)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - t0 >= LS_STOP_TIMEOUT )); then
      say "still alive ${LS_STOP_TIMEOUT}s after SIGTERM; sending SIGKILL to its process group"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE" "$ENDPOINTFILE"
  say "stopped pid $pid after $((SECONDS - t0))s"
}

cmd_status() {
  local pid ep
  pid=$(running_pid)
  if [ -z "$pid" ]; then echo "not running ($LS_HOME)"; return 1; fi
  ep=$(endpoint)
  if healthy "$ep"; then echo "running pid=$pid endpoint=$ep healthy"; else echo "running pid=$pid endpoint=$ep NOT healthy"; fi
  "$PY" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/_localstack/health", timeout=2).read().decode())' "$ep" 2>/dev/null || true
}

cmd_env() {
  local ep
  ep=$(endpoint)
  printf 'export AWS_ENDPOINT_URL=%q\n' "$ep"
  printf 'export AWS_ACCESS_KEY_ID=test\n'
  printf 'export AWS_SECRET_ACCESS_KEY=test\n'
  printf 'export AWS_REGION=us-east-1\n'
  printf 'export AWS_DEFAULT_REGION=us-east-1\n'
  printf 'export AWS_EC2_METADATA_DISABLED=true\n'
  printf 'export LOCALSTACK_HOME=%q\n' "$LS_HOME"
  printf 'export LOCALSTACK_AWS_CLI=%q\n' "$VENV/bin/aws"
}

cmd_aws() {
  [ -x "$VENV/bin/aws" ] || die "no aws CLI in $VENV; run: $0 install"
  AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test} \
    AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}} \
    exec "$VENV/bin/aws" --endpoint-url "$(endpoint)" "$@"
}

case $cmd in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  aws) cmd_aws "$@" ;;
  help | -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
