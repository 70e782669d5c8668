#!/usr/bin/env python3
"""The daemon end to end, as a user runs it: LocalStack S3 + SQS, the real release
binary, and a local counting intake (NDJSON, gzip or zstd bodies decompressed and
counted; zstd needs the `zstandard` package: pip install zstandard).

Run by hand (never by the test command); see crates/alf-bench/README.md:

    /work/ls/venv/bin/python crates/alf-bench/e2e/daemon_e2e.py \
        --endpoint http://127.0.0.1:4614 --objects /tmp/cf1m.log.gz
    ... --objects /tmp/cf125k-{1..8}.log.gz     (several objects uploaded at once)

Reports: wall time from the first upload to the last event at the intake, the
daemon's CPU seconds (utime + stime from /proc/PID/stat, and each on its own), its
peak RSS (VmHWM from /proc/PID/status) and events per CPU-second. The intake runs in
this Python process, so its CPU is not the daemon's. With E2E_THREADS=1 in the
environment, the CPU of each daemon thread is printed too (stderr): the parsing
thread against `parse` alone, the compressing threads, the tokio workers.

    ... --extra-intake 'compression = "zstd"'
        zstd request bodies (the intake decompresses them with `zstandard`).

    ... --latency 5 --objects /tmp/cf10.log.gz
        uploads the object 5 times, one after the other, each once the previous one's
        events all arrived, and reports for each the delay from the end of its upload
        to its first and to its last event at the intake.
    ... --env MIMALLOC_PURGE_DELAY=0 --extra-processing 'parse_threads = 1'
        runs the daemon with an environment variable / more [processing] keys.
"""

import argparse
import gzip
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import boto3

TICKS = os.sysconf("SC_CLK_TCK")


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.events = 0
        self.requests = 0
        self.last = None
        self.first = None


COUNTER = Counter()


class Intake(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        coding = self.headers.get("content-encoding")
        if coding == "gzip":
            body = gzip.decompress(body)
        elif coding == "zstd":
            import zstandard  # only when the daemon sends zstd
            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        n = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
        with COUNTER.lock:
            COUNTER.events += n
            COUNTER.requests += 1
            COUNTER.last = time.monotonic()
            if COUNTER.first is None:
                COUNTER.first = COUNTER.last
        self.send_response(200)
        self.send_header("content-length", "2")
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def proc_cpu_split(pid):
    """(user, system) CPU seconds of the process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def proc_hwm_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def count_records(path):
    with gzip.open(path, "rb") as f:
        return sum(1 for line in f if not line.startswith(b"#"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default="http://127.0.0.1:4614")
    ap.add_argument("--binary", default="target/release/aws-log-forwarder")
    ap.add_argument("--objects", nargs="+", required=True)
    ap.add_argument("--object-concurrency", type=int, default=2)
    ap.add_argument("--gzip", default="true")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--extra-intake", default="", help="more [intake] lines")
    ap.add_argument("--extra", default="", help="more TOML sections")
    ap.add_argument("--extra-processing", default="", help="more [processing] lines")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the daemon")
    ap.add_argument("--expected", type=int, default=0,
                    help="events to wait for (default: the objects' lines not starting with #)")
    ap.add_argument("--latency", type=int, default=0,
                    help="upload the (one) object this many times, one after the other")
    args = ap.parse_args()

    expected = args.expected or sum(count_records(p) for p in args.objects)
    kw = dict(endpoint_url=args.endpoint, region_name="us-east-1",
              aws_access_key_id="test", aws_secret_access_key="test")
    s3 = boto3.client("s3", **kw)
    sqs = boto3.client("sqs", **kw)
    name = "alf-e2e-" + uuid.uuid4().hex[:8]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=name)
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Intake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    intake = f"http://127.0.0.1:{server.server_address[1]}/"

    config = f"""
[aws]
region = "us-east-1"
endpoint_url = "{args.endpoint}"
force_path_style = true
[sqs]
queue_url = "{queue_url}"
wait_time_seconds = 1
[processing]
object_concurrency = {args.object_concurrency}
{args.extra_processing}
[intake]
url = "{intake}"
protocol = "ndjson"
key = "e2e"
gzip = {args.gzip}
{args.extra_intake}
[log]
level = "error"
{args.extra}
"""
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(config)
    cfg.close()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    env.update(kv.split("=", 1) for kv in args.env)
    daemon = subprocess.Popen([args.binary, "run", "--config", cfg.name], env=env)
    try:
        time.sleep(2)  # start-up and the first (empty) poll
        idle_user, idle_sys = proc_cpu_split(daemon.pid)
        idle_hwm = proc_hwm_kb(daemon.pid)
        if args.latency:
            latency_runs(args, s3, name, daemon, expected)
            return
        start = time.monotonic()
        threads = []
        for i, path in enumerate(args.objects):
            key = f"AWSLogs/cf/E2E{i}.2026-12-07-00.{i:08x}.gz"
            t = threading.Thread(target=s3.upload_file, args=(path, name, key))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        uploaded = time.monotonic() - start
        hwm = idle_hwm
        while COUNTER.events < expected:
            if daemon.poll() is not None:
                sys.exit(f"the daemon exited with {daemon.returncode}")
            if time.monotonic() - start > args.timeout:
                sys.exit(f"timeout: {COUNTER.events} of {expected} events")
            hwm = max(hwm, proc_hwm_kb(daemon.pid))
            time.sleep(0.2)
        user, system = proc_cpu_split(daemon.pid)
        user, system = user - idle_user, system - idle_sys
        cpu = user + system
        if os.environ.get("E2E_THREADS"):
            for tid in sorted(os.listdir(f"/proc/{daemon.pid}/task")):
                base = f"/proc/{daemon.pid}/task/{tid}"
                name = open(f"{base}/comm").read().strip()
                u, k = proc_cpu_split(f"{daemon.pid}/task/{tid}")
                if u + k > 0.05:
                    print(f"thread {tid} {name}: user {u:.2f} sys {k:.2f}", file=sys.stderr)
        hwm = max(hwm, proc_hwm_kb(daemon.pid))
        wall = COUNTER.last - start
        print(json.dumps({
            "objects": len(args.objects), "events": COUNTER.events,
            "requests": COUNTER.requests, "gzip": args.gzip,
            "upload_s": round(uploaded, 2), "wall_upload_to_last_event_s": round(wall, 2),
            "daemon_cpu_s": round(cpu, 2), "events_per_cpu_s": round(COUNTER.events / cpu),
            "user_s": round(user, 2), "sys_s": round(system, 2),
            "idle_rss_mb": round(idle_hwm / 1024, 1), "peak_rss_mb": round(hwm / 1024, 1),
            "load_avg_1m": os.getloadavg()[0],
        }))
    finally:
        daemon.terminate()
        daemon.wait()
        os.unlink(cfg.name)


def latency_runs(args, s3, bucket, daemon, per_object):
    """Uploads the one object `args.latency` times in a row; for each, the delay from
    the end of its upload to its first and its last event at the intake."""
    results = []
    for i in range(args.latency):
        with COUNTER.lock:
            COUNTER.first = None
            before = COUNTER.events
        key = f"AWSLogs/cf/E2EL.2026-12-07-00.{uuid.uuid4().hex[:8]}.gz"
        s3.upload_file(args.objects[0], bucket, key)
        uploaded = time.monotonic()
        while COUNTER.events < before + per_object:
            if daemon.poll() is not None:
                sys.exit(f"the daemon exited with {daemon.returncode}")
            if time.monotonic() - uploaded > args.timeout:
                sys.exit(f"timeout: {COUNTER.events - before} of {per_object} events")
            time.sleep(0.005)
        results.append({"first_event_s": round(COUNTER.first - uploaded, 3),
                        "last_event_s": round(COUNTER.last - uploaded, 3)})
    print(json.dumps({"latency_runs": results, "events_per_object": per_object,
                      "load_avg_1m": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
