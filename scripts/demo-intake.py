#!/usr/bin/env python3
"""demo-intake.py - a tiny stand-in for the Sekoia.io intake, for scripts/demo.sh.

Implements the Sekoia `/batch` protocol: POST {"intake_key": KEY, "jsons": ["<event>", ...]}
(gzip bodies with `Content-Encoding: gzip` are accepted), answers like the real intake
({"received": N, "event_ids": [...]}), prints every event on one short line, appends
every event to OUTPUT/events.ndjson, and serves running counts at GET /stats.
Plain NDJSON bodies (the forwarder's `ndjson` protocol) are accepted too.

Python 3 standard library only.

Usage: demo-intake.py [--port 0] [--port-file FILE] [--output demo-output] [--key KEY] [--quiet]
"""

import argparse
import gzip
import json
import os
import signal
import sys
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Fields worth showing per event, first found wins per slot; the dataset and
# @timestamp always come first.
SHOW = [
    ("event.action",),
    ("source.ip", "client.ip"),
    ("destination.ip", "destination.domain", "dns.question.name"),
    ("http.request.method",),
    ("url.path", "url.original"),
    ("http.response.status_code",),
    ("user.name", "aws.cloudtrail.user_identity.arn"),
    ("rule.name", "message"),
]


def get(event, path):
    value = event
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def one_line(event):
    parts = [
        f"{get(event, 'event.dataset') or '?':<26}",
        f"{get(event, '@timestamp') or '-':<24}",
    ]
    for candidates in SHOW:
        for path in candidates:
            value = get(event, path)
            if value not in (None, "", []):
                text = str(value)
                if len(text) > 60:
                    text = text[:57] + "..."
                label = ".".join(path.split(".")[-2:])
                parts.append(f"{label}={text}")
                break
    tags = get(event, "tags") or []
    if "_parse_failure" in tags:
        parts.append("[_parse_failure]")
    return "  ".join(parts)


class Stats:
    def __init__(self, output_path):
        self.lock = threading.Lock()
        self.by_dataset = Counter()
        self.parse_failures = 0
        self.requests = 0
        self.rejected = 0
        self.events = 0
        self.ids = set()
        self.output = open(output_path, "a", encoding="utf-8")

    def add(self, events):
        with self.lock:
            self.requests += 1
            for ev in events:
                self.events += 1
                self.by_dataset[get(ev, "event.dataset") or "<none>"] += 1
                if "_parse_failure" in (get(ev, "tags") or []):
                    self.parse_failures += 1
                ev_id = get(ev, "event.id")
                if ev_id:
                    self.ids.add(ev_id)
                self.output.write(json.dumps(ev, separators=(",", ":")) + "\n")
            self.output.flush()

    def snapshot(self):
        with self.lock:
            return {
                "events": self.events,
                "unique_event_ids": len(self.ids),
                "requests": self.requests,
                "rejected_requests": self.rejected,
                "parse_failures": self.parse_failures,
                "by_dataset": dict(sorted(self.by_dataset.items())),
            }


def make_handler(stats, key, quiet):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "demo-intake/1"

        def log_message(self, fmt, *args):  # the default logs every request to stderr
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/stats":
                self.reply(200, stats.snapshot())
            elif self.path in ("/", "/health"):
                self.reply(200, {"status": "ok"})
            else:
                self.reply(404, {"message": "not found"})

        def do_HEAD(self):  # the forwarder's start-up reachability probe
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                text = body.decode("utf-8")
                if self.path.rstrip("/").endswith("/batch"):
                    doc = json.loads(text)
                    got_key = doc.get("intake_key")
                    events = [json.loads(s) for s in doc["jsons"]]
                else:
                    got_key = self.headers.get("X-Intake-Key")
                    events = [json.loads(line) for line in text.splitlines() if line.strip()]
            except (ValueError, KeyError, TypeError, OSError) as e:
                with stats.lock:
                    stats.rejected += 1
                print(f"demo-intake: rejected a malformed request to {self.path}: {e}", flush=True)
                self.reply(400, {"message": f"malformed request: {e}"})
                return
            if key and got_key != key:
                with stats.lock:
                    stats.rejected += 1
                print("demo-intake: rejected a request with a wrong intake key", flush=True)
                self.reply(401, {"message": "unknown intake key"})
                return
            stats.add(events)
            if not quiet:
                for ev in events:
                    print(one_line(ev), flush=True)
            self.reply(200, {"received": len(events), "event_ids": [str(uuid.uuid4()) for _ in events]})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port-file", help="write the chosen port here once listening")
    ap.add_argument("--output", default="demo-output", help="directory for events.ndjson")
    ap.add_argument("--key", help="accept only this intake key")
    ap.add_argument("--quiet", action="store_true", help="do not print every event")
    args = ap.parse_args()

    os.makedirs(args.output, exist_ok=True)
    out_path = os.path.join(args.output, "events.ndjson")
    open(out_path, "w").close()  # every run starts empty
    stats = Stats(out_path)
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(stats, args.key, args.quiet))
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"demo-intake: listening on http://{args.bind}:{port} (Sekoia /batch), writing {out_path}", flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    snap = stats.snapshot()
    print(f"demo-intake: stopped after {snap['events']} events in {snap['requests']} requests", flush=True)


if __name__ == "__main__":
    sys.exit(main())
