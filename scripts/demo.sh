#!/usr/bin/env bash
# demo.sh - THE one command that shows aws-log-forwarder doing its job, entirely on this
# machine: AWS logs land in an S3 bucket, S3 announces them on SQS, the forwarder turns
# every record into an ECS event and ships it to a (local stand-in for the) Sekoia intake.
#
# Usage: scripts/demo.sh
#
# What it does:
#   1. builds the forwarder (cargo build --release -p aws-log-forwarder)
#   2. installs (idempotent) and starts a private LocalStack on a free loopback port
#   3. deploys cloudformation/aws-log-forwarder.yaml with scripts/deploy-stack.sh
#      (bucket, queue + dead-letter queue, S3 notification, IAM user + access key)
#   4. starts scripts/demo-intake.py, a Sekoia /batch look-alike that prints each event
#   5. starts `aws-log-forwarder run` with a generated config and the stack's access key
#   6. gzips and uploads every tests/samples/<format>.log under the key AWS would use
#   7. waits until the queue is drained and the intake stopped receiving, stops the
#      forwarder with SIGTERM, and prints a per-dataset summary
# Everything it started is stopped on exit (success, failure or Ctrl-C).
#
# Output: demo-output/events.ndjson (every event received), demo-output/forwarder.log,
# demo-output/config.toml (the generated configuration).
#
# Environment:
#   ALF_DEMO_PROFILE=release   cargo profile to build and run (dev is quicker to build)
#   ALF_DEMO_TIMEOUT=180       seconds to wait for the queue to drain
#   ALF_DEMO_QUIET=1           do not print every event as it arrives
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LS_BASE=$ROOT/.localstack
OUT=$ROOT/demo-output
PROFILE=${ALF_DEMO_PROFILE:-release}
TIMEOUT=${ALF_DEMO_TIMEOUT:-180}
INTAKE_KEY=demo-intake-key-00000000
STACK=alf-demo

say() { printf '\n==> demo: %s\n' "$*" >&2; }
die() { printf '\ndemo: error: %s\n' "$*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/alf-demo.XXXXXX")
RUN_HOME=
DAEMON_PID=
INTAKE_PID=
cleanup() {
  local rc=$?
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  if [ -n "$INTAKE_PID" ] && kill -0 "$INTAKE_PID" 2>/dev/null; then
    kill -TERM "$INTAKE_PID" 2>/dev/null || true
    wait "$INTAKE_PID" 2>/dev/null || true
  fi
  if [ -n "$RUN_HOME" ] && [ -d "$RUN_HOME" ]; then
    scripts/localstack.sh stop "$RUN_HOME" >/dev/null 2>&1 || true
    rm -rf "$RUN_HOME"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------- 1. build
say "building the forwarder ($PROFILE profile)"
cargo build --profile "$PROFILE" -p aws-log-forwarder --bin aws-log-forwarder
case $PROFILE in dev) profile_dir=debug ;; *) profile_dir=$PROFILE ;; esac
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$profile_dir/aws-log-forwarder
[ -x "$BIN" ] || die "no binary at $BIN"

# ---------------------------------------------------------------------------- 2. LocalStack
say "starting LocalStack"
scripts/localstack.sh install "$LS_BASE"
RUN_HOME=$(mktemp -d "$LS_BASE/demo-run.XXXXXX")
ENDPOINT=$(LS_VENV=$LS_BASE/venv LS_PORT=$(free_port) scripts/localstack.sh start "$RUN_HOME")
export AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN
AWS=("$LS_BASE/venv/bin/aws" --endpoint-url "$ENDPOINT")

# ---------------------------------------------------------------------------- 3. stack
say "deploying the CloudFormation stack $STACK"
scripts/deploy-stack.sh "$STACK" > "$WORK/outputs"
declare -A OUTPUT=()
while IFS='=' read -r k v; do [ -n "$k" ] && OUTPUT[$k]=$v; done < "$WORK/outputs"
QUEUE_URL=${OUTPUT[QueueUrl]:-}
DLQ_URL=${OUTPUT[DeadLetterQueueUrl]:-}
BUCKET=${OUTPUT[BucketName]:-}
[ -n "$QUEUE_URL" ] && [ -n "$BUCKET" ] || die "stack outputs lack QueueUrl/BucketName: $(cat "$WORK/outputs")"
printf '  bucket %s\n  queue  %s\n  dlq    %s\n' "$BUCKET" "$QUEUE_URL" "$DLQ_URL" >&2

queue_depth() {  # visible + in flight + delayed
  "${AWS[@]}" sqs get-queue-attributes --queue-url "$1" --attribute-names \
    ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible ApproximateNumberOfMessagesDelayed \
    --query 'sum(map(&to_number(@), values(Attributes)))' --output text
}

# ---------------------------------------------------------------------------- 4. intake
mkdir -p "$OUT"
say "starting the demo intake"
intake_args=(--port 0 --port-file "$WORK/intake.port" --output "$OUT" --key "$INTAKE_KEY")
[ "${ALF_DEMO_QUIET:-0}" = 1 ] && intake_args+=(--quiet)
python3 scripts/demo-intake.py "${intake_args[@]}" &
INTAKE_PID=$!
for _ in $(seq 100); do [ -s "$WORK/intake.port" ] && break; sleep 0.1; done
[ -s "$WORK/intake.port" ] || die "the demo intake did not start"
INTAKE_URL=http://127.0.0.1:$(cat "$WORK/intake.port")
intake_stats() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/stats", timeout=5).read().decode())' "$INTAKE_URL"; }
intake_events() { intake_stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["events"])'; }

# ---------------------------------------------------------------------------- 5. forwarder
METRICS_ADDR=127.0.0.1:$(free_port)
cat > "$OUT/config.toml" <<EOF
# Generated by scripts/demo.sh: the forwarder against LocalStack and the demo intake.
[aws]
region = "us-east-1"
endpoint_url = "$ENDPOINT"

[sqs]
queue_url = "$QUEUE_URL"
wait_time_seconds = 2
visibility_timeout_seconds = 120
heartbeat_interval_seconds = 30

[intake]
url = "$INTAKE_URL"
protocol = "sekoia"
key_env = "ALF_DEMO_INTAKE_KEY"   # the key stays out of the file

[batch]
linger_ms = 200

[log]
level = "info"
format = "text"

[metrics]
listen = "$METRICS_ADDR"
EOF
say "starting aws-log-forwarder run --config demo-output/config.toml (log: demo-output/forwarder.log)"
# The forwarder uses the least-privilege access key the stack created for it.
(
  export AWS_ACCESS_KEY_ID=${OUTPUT[AccessKeyId]:-test} AWS_SECRET_ACCESS_KEY=${OUTPUT[SecretAccessKey]:-test}
  export ALF_DEMO_INTAKE_KEY=$INTAKE_KEY
  exec "$BIN" run --config "$OUT/config.toml"
) > "$OUT/forwarder.log" 2>&1 &
DAEMON_PID=$!
sleep 1
kill -0 "$DAEMON_PID" 2>/dev/null || { tail -n 30 "$OUT/forwarder.log" >&2; die "the forwarder exited at start"; }

# ---------------------------------------------------------------------------- 6. upload
# The key each log type is delivered under by AWS (the forwarder recognises types by it).
key_for() {
  local acct=123456789012
  case $1 in
    cloudfront) echo "cloudfront/E2DEMODIST0001.2024-05-01-12.a1b2c3d4.gz" ;;
    s3-access) echo "s3-access-logs/2024-05-01-12-34-56-0123456789ABCDEF" ;;
    elb) echo "AWSLogs/$acct/elasticloadbalancing/us-east-1/2024/05/01/${acct}_elasticloadbalancing_us-east-1_app.demo-alb.50dc6c495c0c9188_20240501T1200Z_10.0.0.1_2et2e1mx.log.gz" ;;
    vpc-flow) echo "AWSLogs/$acct/vpcflowlogs/us-east-1/2024/05/01/${acct}_vpcflowlogs_us-east-1_fl-0a1b2c3d4e5f67890_20240501T1200Z_5b2e1c8f.log.gz" ;;
    cloudtrail) echo "AWSLogs/$acct/CloudTrail/us-east-1/2024/05/01/${acct}_CloudTrail_us-east-1_20240501T1205Z_Ab3dEf6hIj9kLm2n.json.gz" ;;
    waf) echo "aws-waf-logs-demo/2024/05/01/12/aws-waf-logs-demo-1-2024-05-01-12-00-00-6f0c3e4a.gz" ;;
    guardduty) echo "AWSLogs/$acct/GuardDuty/us-east-1/2024/05/01/3c1e8f2a-9b7d-4e5f-8a6b-1d2c3e4f5a6b.jsonl.gz" ;;
    route53-resolver) echo "AWSLogs/$acct/vpcdnsquerylogs/vpc-0a1b2c3d/2024/05/01/vpc-0a1b2c3d_vpcdnsquerylogs_${acct}_20240501T1200Z_7c9e2f1a.log.gz" ;;
    network-firewall) echo "AWSLogs/$acct/network-firewall/alert/us-east-1/demo-fw/2024/05/01/12/${acct}_network-firewall_alert_us-east-1_demo-fw_20240501T1200Z_1a2b3c4d.log.gz" ;;
    aws-config) echo "AWSLogs/$acct/Config/us-east-1/2024/5/1/ConfigHistory/${acct}_Config_us-east-1_ConfigHistory_AWS::EC2::SecurityGroup_20240501T120000Z_20240501T130000Z_1.json.gz" ;;
    global-accelerator) echo "AWSLogs/$acct/globalaccelerator/us-west-2/2024/05/01/${acct}_globalaccelerator_1234abcd-abcd-1234-abcd-1234abcdefgh_20240501T1200Z_9d8c7b6a.log.gz" ;;
    redshift-audit) echo "AWSLogs/$acct/redshift/us-east-1/2024/05/01/${acct}_redshift_us-east-1_analytics_connectionlog_2024-05-01T12:00.gz" ;;
    # Amazon Data Firehose keys carry no marker of their content: recognised by content.
    cloudwatch-logs) echo "firehose/cloudwatch-logs/2024/05/01/12/cwl-to-s3-1-2024-05-01-12-00-00-5f1c2e3d-4a5b-6c7d-8e9f-0a1b2c3d4e5f" ;;
    eventbridge) echo "firehose/eventbridge/2024/05/01/12/events-to-s3-1-2024-05-01-12-00-00-6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d" ;;
    securityhub) echo "firehose/securityhub/2024/05/01/12/findings-to-s3-1-2024-05-01-12-00-00-7b8c9d0e-1f2a-4b3c-9d4e-5f6a7b8c9d0e" ;;
    *) echo "misc/$1.log.gz" ;;  # ndjson, lines, anything new: recognised by content
  esac
}

shopt -s nullglob
samples=(tests/samples/*.log)
[ ${#samples[@]} -gt 0 ] || die "no sample logs in tests/samples/"
say "uploading ${#samples[@]} sample logs to s3://$BUCKET"
for f in "${samples[@]}"; do
  name=$(basename "$f" .log)
  key=$(key_for "$name")
  if [ "$name" = s3-access ]; then
    cp "$f" "$WORK/object"  # S3 server access logs are delivered uncompressed
  else
    gzip -c "$f" > "$WORK/object"
  fi
  "${AWS[@]}" s3api put-object --bucket "$BUCKET" --key "$key" --body "$WORK/object" >/dev/null
  printf '  %-18s -> %s\n' "$name" "$key" >&2
done

# ---------------------------------------------------------------------------- 7. drain
say "waiting for the queue to drain (timeout ${TIMEOUT}s)"
t0=$SECONDS
last=-1
stable=0
drained=0
while (( SECONDS - t0 < TIMEOUT )); do
  kill -0 "$DAEMON_PID" 2>/dev/null || { tail -n 30 "$OUT/forwarder.log" >&2; die "the forwarder died"; }
  depth=$(queue_depth "$QUEUE_URL")
  events=$(intake_events)
  if [ "$depth" = 0 ] && [ "$events" -gt 0 ] && [ "$events" = "$last" ]; then
    stable=$((stable + 1))
    if [ "$stable" -ge 2 ]; then drained=1; break; fi
  else
    stable=0
  fi
  last=$events
  sleep 1
done
drain_seconds=$((SECONDS - t0))

say "stopping the forwarder (SIGTERM)"
metrics=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5).read().decode())' "$METRICS_ADDR" 2>/dev/null || true)
kill -TERM "$DAEMON_PID"
daemon_rc=0
wait "$DAEMON_PID" || daemon_rc=$?
DAEMON_PID=

# ---------------------------------------------------------------------------- summary
dlq_depth=$(queue_depth "$DLQ_URL")
stats=$(intake_stats)
warnings=$(grep -Eci '\b(WARN|ERROR)\b' "$OUT/forwarder.log" || true)
printf '\n======================== demo summary ========================\n'
STATS=$stats python3 - <<'PYEOF'
import json, os
s = json.loads(os.environ["STATS"])
print(f"  {'event.dataset':<30} {'events':>7}")
for ds, n in s["by_dataset"].items():
    print(f"  {ds:<30} {n:>7}")
print(f"  {'total':<30} {s['events']:>7}   ({s['unique_event_ids']} unique event ids, "
      f"{s['requests']} intake requests, {s['parse_failures']} _parse_failure events)")
PYEOF
if [ -n "$metrics" ]; then
  printf '  forwarder metrics (excerpt):\n'
  grep -E '^alf_[a-z_]+(\{[^}]*\})? ' <<< "$metrics" | grep -Ev '_bucket|_sum|_count|quantile' | sort | head -n 16 | sed 's/^/    /'
fi
printf '  queue drained:            %s (after %ss)\n' "$([ "$drained" = 1 ] && echo yes || echo "NO, timed out")" "$drain_seconds"
printf '  dead-letter queue:        %s messages\n' "$dlq_depth"
printf '  forwarder exit status:    %s (after SIGTERM)\n' "$daemon_rc"
printf '  forwarder warnings/errors: %s lines in demo-output/forwarder.log\n' "$warnings"
printf '  every event received:     demo-output/events.ndjson\n'
python3 - "$OUT/events.ndjson" <<'PYEOF'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
# A compact record type makes the most readable example; any event will do otherwise.
prefer = ["aws.vpcflow", "aws.elb_logs", "aws.s3access"]
pick = next((e for ds in prefer for e in events if e.get("event", {}).get("dataset") == ds), None)
pick = pick or (events[0] if events else None)
if pick:
    print(f"  example event ({pick.get('event', {}).get('dataset')}):")
    print("\n".join("    " + line for line in json.dumps(pick, indent=2).splitlines()))
PYEOF
printf '==============================================================\n'

[ "$drained" = 1 ] && [ "$dlq_depth" = 0 ] && [ "$daemon_rc" = 0 ] || die "the demo did not complete cleanly (see above and demo-output/forwarder.log)"
