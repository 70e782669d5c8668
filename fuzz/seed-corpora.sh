#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seeds: small generated files (alf-bench gen) and the
# realistic samples in tests/samples/. Safe to re-run; existing corpus entries stay.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
cargo build -q -p alf-bench --bin alf-bench
gen="$root/target/debug/alf-bench"
corpus="$here/corpus"

# formats: one byte picking the format (its index in the registry, as
# `alf-bench formats` lists it), then the object: generated files and samples.
mkdir -p "$corpus/formats"
while read -r index name; do
  # The escape, not the byte: a shell variable cannot hold the NUL of index 0.
  byte="\\$(printf %03o "$index")"
  kinds="$name"
  [ "$name" = vpc-flow ] && kinds="vpc-flow vpc-flow-custom"
  for kind in $kinds; do
    for records in 1 4 20; do
      for seed in 1 2; do
        # Through a file: `-o /dev/stdout` would truncate the byte already written.
        "$gen" gen "$kind" --records "$records" --seed "$seed" -o "$corpus/formats/.gen" 2>/dev/null
        { printf "$byte"; cat "$corpus/formats/.gen"; } > "$corpus/formats/gen-$kind-$records-$seed"
      done
    done
  done
  # Every sample as every format: cross-format input.
  for sample in tests/samples/*.log; do
    { printf "$byte"; cat "$sample"; } > "$corpus/formats/sample-$(basename "$sample" .log)-as-$name"
  done
done < <("$gen" formats)
rm -f "$corpus/formats/.gen"

# detect: one byte of key length, the key, then the object's first bytes.
mkdir -p "$corpus/detect"
python3 - "$gen" "$corpus/detect" <<'PY'
import subprocess, sys, os
gen, out = sys.argv[1], sys.argv[2]
keys = {
  "cloudfront": "cloudfront/E2QWRUHAPOMQZL.2024-03-15-00.a1b2c3d4.gz",
  "s3-access": "s3-access/2024-03-15-00-00-01-3E57427F3EXAMPLE",
  "elb": "AWSLogs/123456789012/elasticloadbalancing/us-east-2/2024/03/15/123456789012_elasticloadbalancing_us-east-2_app.x.y_20240315T0005Z_198.51.100.7_2kb.log.gz",
  "vpc-flow": "AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/03/15/123456789012_vpcflowlogs_us-east-1_fl-1_20240315T0000Z_a.log.gz",
  "cloudtrail": "AWSLogs/123456789012/CloudTrail/us-east-1/2024/03/15/123456789012_CloudTrail_us-east-1_20240315T0005Z_x.json.gz",
  "waf": "AWSLogs/123456789012/WAFLogs/us-east-1/acl/2024/03/15/00/05/aws-waf-logs-x.log.gz",
  "guardduty": "AWSLogs/123456789012/GuardDuty/us-east-1/2024/03/15/x.jsonl.gz",
  "route53-resolver": "AWSLogs/123456789012/vpcdnsquerylogs/vpc-1/2024/03/15/x.log.gz",
  "network-firewall": "AWSLogs/123456789012/network-firewall/alert/us-east-1/fw/2024/03/15/00/x.log.gz",
  "ndjson": "apps/checkout/part-0000.json",
  "lines": "apps/legacy/messages.log",
}
for kind, key in keys.items():
    body = subprocess.run([gen, "gen", kind, "--records", "3", "-o", "/dev/stdout"],
                          capture_output=True, check=True).stdout[:1024]
    for name, k in (("key", key), ("nokey", "x")):
        kb = k.encode()[:255]
        with open(os.path.join(out, f"{kind}-{name}"), "wb") as f:
            f.write(bytes([len(kb)]) + kb + body)
with open(os.path.join(out, "digest"), "wb") as f:
    k = b"AWSLogs/1/CloudTrail-Digest/us-east-1/2024/03/15/x.json.gz"
    f.write(bytes([len(k)]) + k + b"{}")
PY

# redact: request lines and JSON with presigned parameters and tokens.
mkdir -p "$corpus/redact"
printf '%s' 'GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240315%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=3fb549b1d8d43d91&X-Amz-Security-Token=IQoJb3JpZ2lu HTTP/1.1' > "$corpus/redact/presigned"
printf '%s' '/f.pdf?AWSAccessKeyId=ASIAX&Expires=1385503597&Signature=hcxmv/mLM6UiE2aFPa1KQJM6Q2Q%3D' > "$corpus/redact/sigv2"
printf '%s' '{"X-Amz-Security-Token":"tok","a":"b","signature" : "x"}' > "$corpus/redact/json"
printf '%s' 'x-amz-security-token: tok; Signature%3Dabc, signatures=5' > "$corpus/redact/header"
# parquet: small VPC flow and OCSF files in each codec.
cargo build -q -p alf-bench --bin alf-gen-parquet
mkdir -p "$corpus/parquet"
for kind in vpc-flow ocsf; do
  for codec in snappy gzip zstd none; do
    "$root/target/debug/alf-gen-parquet" "$kind" --records 5 --codec "$codec" -o "$corpus/parquet/gen-$kind-$codec.parquet" 2>/dev/null
  done
done
echo "seeded: $(find "$corpus" -type f | wc -l) files in $corpus"
