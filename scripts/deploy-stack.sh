#!/usr/bin/env bash
# deploy-stack.sh - deploy cloudformation/aws-log-forwarder.yaml and print the stack outputs.
#
# Usage:
#   scripts/deploy-stack.sh STACK_NAME [Parameter=Value ...]   create or update, wait, print outputs
#   scripts/deploy-stack.sh --recreate STACK_NAME [...]         delete the stack first if it exists
#   scripts/deploy-stack.sh --outputs STACK_NAME                print the outputs of an existing stack
#   scripts/deploy-stack.sh --delete STACK_NAME                 delete the stack and wait (AWS keeps
#                                                               the bucket: DeletionPolicy Retain)
#
# Outputs go to stdout as KEY=VALUE lines (QueueUrl=..., BucketName=..., AccessKeyId=...);
# everything else goes to stderr, so callers can do
#   eval "$(scripts/deploy-stack.sh alf-dev KeyPrefix=AWSLogs/)"
# The values of this template's outputs (URLs, ARNs, names, access keys) never contain
# whitespace or shell quoting characters.
#
# Target:
#   AWS_ENDPOINT_URL set (e.g. after `eval "$(scripts/localstack.sh env)"`): deploy there,
#       with test/test credentials and us-east-1 unless others are set. LocalStack checks:
#       - resources it only pretended to create ("deployed as a fallback") fail the run
#         (ALF_ALLOW_FALLBACK=1 makes that a warning);
#       - it ignores CloudFormation updates of the bucket (key filters, lifecycle): a warning
#         says so; use --recreate to apply such changes.
#   AWS_ENDPOINT_URL unset: real AWS, with the aws CLI's usual credentials, profile and region.
#
# Other environment:
#   AWS_CLI              the aws command (default: $LOCALSTACK_AWS_CLI, else
#                        <repo>/.localstack/venv/bin/aws when it exists, else `aws` from PATH)
#   ALF_TEMPLATE         template to deploy (default: <repo>/cloudformation/aws-log-forwarder.yaml)
#   ALF_DEPLOY_TIMEOUT   seconds to wait for the stack to settle (default 1800)
#   ALF_POLL_SECONDS     status poll interval (default 1 with AWS_ENDPOINT_URL, else 5)
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATE=${ALF_TEMPLATE:-$ROOT/cloudformation/aws-log-forwarder.yaml}

say() { echo "deploy-stack.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

mode=deploy
recreate=0
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --outputs) mode=outputs ;;
    --delete) mode=delete ;;
    --recreate) recreate=1 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || die "missing STACK_NAME (see --help)"
STACK=$1
shift
[ "$mode" = deploy ] || [ $# -eq 0 ] || die "--$mode takes only STACK_NAME"
for p in "$@"; do
  [[ $p == [A-Za-z0-9]*=* ]] || die "parameter override '$p' is not Parameter=Value"
done

# --- the aws command --------------------------------------------------------------------
if [ -n "${AWS_CLI:-}" ]; then
  read -r -a AWS <<< "$AWS_CLI"
elif [ -n "${LOCALSTACK_AWS_CLI:-}" ] && [ -x "$LOCALSTACK_AWS_CLI" ]; then
  AWS=("$LOCALSTACK_AWS_CLI")
elif [ -x "$ROOT/.localstack/venv/bin/aws" ]; then
  AWS=("$ROOT/.localstack/venv/bin/aws")
elif command -v aws >/dev/null 2>&1; then
  AWS=(aws)
else
  die "no aws CLI: run scripts/localstack.sh install, or install the AWS CLI"
fi

if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
  target="endpoint $AWS_ENDPOINT_URL"
  POLL=${ALF_POLL_SECONDS:-1}
  # awscli v1 does not apply AWS_ENDPOINT_URL to every service: always pass it explicitly.
  AWS+=(--endpoint-url "$AWS_ENDPOINT_URL")
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
  export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}
else
  target="AWS"
  POLL=${ALF_POLL_SECONDS:-5}
fi
TIMEOUT=${ALF_DEPLOY_TIMEOUT:-1800}
# awscli v1 reads only AWS_DEFAULT_REGION; honour AWS_REGION as the SDKs do.
if [ -n "${AWS_REGION:-}" ]; then AWS+=(--region "$AWS_REGION"); fi

stack_status() {  # prints the status, or NONE when the stack does not exist
  local out
  if out=$("${AWS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
             --query 'Stacks[0].StackStatus' --output text 2>&1); then
    echo "$out"
  elif grep -q 'does not exist' <<< "$out"; then
    echo NONE
  else
    echo "$out" >&2
    die "describe-stacks failed ($target)"
  fi
}

print_outputs() {
  "${AWS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
    --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output text |
    awk -F '\t' 'NF == 2 { print $1 "=" $2 }' | sort
}

failure_events() {
  # shellcheck disable=SC2016  # the backticks are JMESPath literals
  "${AWS[@]}" cloudformation describe-stack-events --stack-name "$STACK" \
    --query 'StackEvents[?contains(ResourceStatus, `FAILED`)].[LogicalResourceId,ResourceStatus,ResourceStatusReason]' \
    --output text 2>/dev/null | head -n 20 >&2 || true
}

# LocalStack reports CREATE_COMPLETE even for resources or properties it does not implement;
# its events then say "... deployed as a fallback" (or similar).
check_fallbacks() {
  [ -n "${AWS_ENDPOINT_URL:-}" ] || return 0
  local hits
  hits=$("${AWS[@]}" cloudformation describe-stack-events --stack-name "$STACK" \
           --query 'StackEvents[].[LogicalResourceId,ResourceType,ResourceStatusReason]' --output text |
         grep -i 'fallback\|not supported\|not implemented' || true)
  [ -z "$hits" ] && return 0
  say "the endpoint did not really implement some resources:"
  echo "$hits" >&2
  [ "${ALF_ALLOW_FALLBACK:-0}" = 1 ] || die "refusing fallback resources (set ALF_ALLOW_FALLBACK=1 to accept)"
}

# Poll until the stack leaves its *_IN_PROGRESS states (the aws CLI's own waiters sleep 30 s
# between checks, which makes a one-second LocalStack deployment take half a minute).
settle() {
  local status t0=$SECONDS last=''
  while :; do
    status=$(stack_status)
    [ "$status" = "$last" ] || say "  $STACK: $status"
    last=$status
    case $status in
      *_IN_PROGRESS) ;;
      *) echo "$status"; return 0 ;;
    esac
    (( SECONDS - t0 < TIMEOUT )) || die "stack $STACK still $status after ${TIMEOUT}s"
    sleep "$POLL"
  done
}

# LocalStack 4.13 does not implement updates of AWS::S3::Bucket: it reports UPDATE_COMPLETE and
# changes nothing (new KeyPrefix/KeySuffix filters, lifecycle, ...). Warn when the last update
# touched the bucket.
check_bucket_update() {
  [ -n "${AWS_ENDPOINT_URL:-}" ] || return 0
  local touched
  touched=$("${AWS[@]}" cloudformation describe-stack-events --stack-name "$STACK" \
              --query 'StackEvents[].[ResourceType,ResourceStatus]' --output text |
            awk -F '\t' '$1 == "AWS::CloudFormation::Stack" && $2 == "UPDATE_IN_PROGRESS" { exit }
                         $1 == "AWS::S3::Bucket" && $2 == "UPDATE_COMPLETE" { print "yes"; exit }')
  [ -z "$touched" ] || say "warning: the bucket changed, but LocalStack ignores updates of AWS::S3::Bucket;" \
    "redeploy with --recreate to apply them"
}

delete_stack() {
  say "deleting stack $STACK ($target)"
  "${AWS[@]}" cloudformation delete-stack --stack-name "$STACK"
  local status
  status=$(settle)
  case $status in
    NONE | DELETE_COMPLETE) ;;
    *) failure_events; die "deleting $STACK failed: $status" ;;
  esac
}

json_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

# JSON for --parameters: the overrides, plus UsePreviousValue for every other parameter the
# stack already has (so an update without overrides keeps the values chosen at creation).
build_parameters() {  # $1 = create|update; overrides in OVERRIDES
  local kind=$1 key json='' sep='' existing=' ' summary
  local -a tparams
  summary=$("${AWS[@]}" cloudformation get-template-summary --template-body "file://$TEMPLATE" \
              --query 'Parameters[].ParameterKey' --output text) || die "get-template-summary failed"
  read -r -a tparams <<< "$summary"
  for key in "${!OVERRIDES[@]}"; do
    [[ " ${tparams[*]} " == *" $key "* ]] || die "the template has no parameter '$key' (it has: ${tparams[*]})"
  done
  if [ "$kind" = update ]; then
    existing=" $("${AWS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
                  --query 'Stacks[0].Parameters[].ParameterKey' --output text | tr '\t' ' ') "
  fi
  for key in "${tparams[@]}"; do
    if [ -n "${OVERRIDES[$key]+set}" ]; then
      json+="$sep{\"ParameterKey\":$(json_str "$key"),\"ParameterValue\":$(json_str "${OVERRIDES[$key]}")}"
    elif [[ $existing == *" $key "* ]]; then
      json+="$sep{\"ParameterKey\":$(json_str "$key"),\"UsePreviousValue\":true}"
    else
      continue
    fi
    sep=,
  done
  echo "[$json]"
}

case $mode in
  outputs)
    status=$(stack_status)
    [ "$status" != NONE ] || die "stack $STACK does not exist ($target)"
    print_outputs
    exit 0
    ;;
  delete)
    status=$(stack_status)
    if [ "$status" = NONE ]; then say "stack $STACK does not exist"; else delete_stack; say "deleted"; fi
    exit 0
    ;;
esac

[ -f "$TEMPLATE" ] || die "template not found: $TEMPLATE"
declare -A OVERRIDES=()
for p in "$@"; do OVERRIDES[${p%%=*}]=${p#*=}; done

status=$(stack_status)
case $status in
  *_IN_PROGRESS)
    status=$(settle) ;;
esac
case $status in
  NONE | DELETE_COMPLETE)
    status=NONE ;;
  ROLLBACK_COMPLETE | ROLLBACK_FAILED | DELETE_FAILED)
    # A stack whose creation failed cannot be updated, only replaced.
    say "stack $STACK is in $status from an earlier failed attempt; replacing it"
    delete_stack
    status=NONE ;;
  *)
    if [ "$recreate" = 1 ]; then delete_stack; status=NONE; fi ;;
esac

say "deploying $STACK to $target from ${TEMPLATE#"$ROOT"/}${*:+ with $*}"
common=(--stack-name "$STACK" --template-body "file://$TEMPLATE" --capabilities CAPABILITY_IAM)
t0=$SECONDS
if [ "$status" = NONE ]; then
  params=$(build_parameters create)
  "${AWS[@]}" cloudformation create-stack "${common[@]}" --parameters "$params" >/dev/null
else
  params=$(build_parameters update)
  if ! out=$("${AWS[@]}" cloudformation update-stack "${common[@]}" --parameters "$params" 2>&1); then
    if grep -q 'No updates are to be performed' <<< "$out"; then
      say "stack $STACK is up to date ($status)"
      check_fallbacks
      print_outputs
      exit 0
    fi
    echo "$out" >&2
    die "update-stack failed"
  fi
fi
status=$(settle)
case $status in
  CREATE_COMPLETE | UPDATE_COMPLETE) ;;
  *) failure_events; die "stack $STACK ended in $status" ;;
esac
check_fallbacks
[ "$status" != UPDATE_COMPLETE ] || check_bucket_update
say "stack $STACK is $status after $((SECONDS - t0))s"
print_outputs
