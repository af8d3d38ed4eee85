#!/usr/bin/env python3
"""Minimal AWS Lambda Runtime API emulator for measuring cold start (init) of a custom-runtime
bootstrap, with nothing but the Python standard library.

Each run starts a fresh HTTP server on 127.0.0.1 on a new ephemeral port (so a keep-alive
request left over from the previous, killed process can never be counted against the next
run), spawns the bootstrap with the environment Lambda gives a function, and times:

  init   = spawn -> the bootstrap's first GET /2018-06-01/runtime/invocation/next
  invoke = that /next answered with --event -> POST .../invocation/{id}/response or /error

Without --event the process is killed as soon as init is measured. Served paths:
GET /2018-06-01/runtime/invocation/next, POST /2018-06-01/runtime/invocation/{id}/response,
POST /2018-06-01/runtime/invocation/{id}/error, POST /2018-06-01/runtime/init/error.

Usage: runtime_emulator.py BOOTSTRAP [--runs N] [--event JSON] [--env K=V ...] [--json]
Exit status: 0 when every run reached init (and, with --event, answered with /response or,
with --allow-error, /error), 1 otherwise.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


class Run:
    """State of one cold start, shared by the server's handler threads."""

    def __init__(self, event):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.t_next = None          # first /next arrived
        self.t_sent = None          # event handed out
        self.t_done = None          # /response or /error arrived
        self.kind = None            # "response" | "error" | "init_error"
        self.body = b""
        self.lock = threading.Lock()
        self.init_seen = threading.Event()
        self.finished = threading.Event()
        self.stop = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep stdout for results
        pass

    def _reply(self, status, body=b"", headers=None):
        try:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the bootstrap was killed while we answered

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        run = self.server.run
        now = time.perf_counter()
        if self.path != PREFIX + "/invocation/next":
            return self._reply(404, b'{"errorMessage":"unknown path"}')
        with run.lock:
            first = run.t_next is None
            if first:
                run.t_next = now
            deliver = first and run.event is not None
            if deliver:
                run.t_sent = time.perf_counter()
        run.init_seen.set()
        if not deliver:
            # Like Lambda between invocations: hold the request until the process is frozen
            # (here: killed at the end of the run).
            run.stop.wait(60)
            return
        deadline_ms = int(time.time() * 1000) + 900_000
        self._reply(200, run.event.encode(), {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": run.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn":
                "arn:aws:lambda:us-east-1:123456789012:function:" + self.server.function_name,
            "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
        })

    def do_POST(self):
        run = self.server.run
        now = time.perf_counter()
        body = self._body()
        inv = PREFIX + "/invocation/" + run.request_id + "/"
        if self.path == inv + "response":
            kind = "response"
        elif self.path == inv + "error":
            kind = "error"
        elif self.path == PREFIX + "/init/error":
            kind = "init_error"
        else:
            return self._reply(404, b'{"errorMessage":"unknown path"}')
        with run.lock:
            if run.kind is None:
                run.kind, run.body, run.t_done = kind, body, now
        self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
        run.finished.set()
        if kind == "init_error":
            run.init_seen.set()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A bootstrap killed mid-request resets its connection: expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def environment(args, port):
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": args.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(args.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + args.function_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]emulator",
        "AWS_REGION": args.region,
        "AWS_DEFAULT_REGION": args.region,
        "AWS_ACCESS_KEY_ID": "AKIDEMULATOR",
        "AWS_SECRET_ACCESS_KEY": "emulator-secret",
        "AWS_SESSION_TOKEN": "emulator-token",
        "_HANDLER": "bootstrap",
        "LAMBDA_TASK_ROOT": os.path.dirname(os.path.abspath(args.bootstrap)),
    }
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep:
            sys.exit(f"--env wants K=V, got {kv!r}")
        env[k] = v
    return env


def one_run(args):
    run = Run(args.event)
    server = Server(("127.0.0.1", 0), Handler)
    server.run, server.function_name = run, args.function_name
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cmd = (args.wrapper.split() if args.wrapper else []) + [os.path.abspath(args.bootstrap)]
    out = None if args.show_output else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=environment(args, port), stdin=subprocess.DEVNULL,
                            stdout=out, stderr=out)
    result = {"port": port}
    try:
        deadline = time.monotonic() + args.timeout
        while not run.init_seen.wait(0.005):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if run.t_next is not None:
            result["init_ms"] = (run.t_next - t0) * 1000
        if run.kind == "init_error":
            result["kind"] = "init_error"
        elif run.t_next is None:
            result["kind"] = "exited" if proc.poll() is not None else "timeout"
            result["exit_code"] = proc.poll()
        elif args.event is not None:
            run.finished.wait(args.timeout)
            result["kind"] = run.kind or "timeout"
            if run.t_done is not None:
                result["invoke_ms"] = (run.t_done - run.t_sent) * 1000
        else:
            result["kind"] = "init"
        if run.body:
            result["body"] = run.body.decode("utf-8", "replace")[:500]
    finally:
        proc.kill()
        proc.wait()
        run.stop.set()
        server.shutdown()
        server.server_close()
    return result


def summary(values):
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bootstrap")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--event", help="JSON payload for one invocation per run")
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--function-name", default="emulated-function")
    p.add_argument("--memory", type=int, default=1024)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per phase")
    p.add_argument("--wrapper", help="command prefix, e.g. 'qemu-aarch64 -L /usr/aarch64-linux-gnu'")
    p.add_argument("--allow-error", action="store_true", help="a handler /error counts as answered")
    p.add_argument("--show-output", action="store_true", help="pass the bootstrap's stdout/stderr through")
    p.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = p.parse_args()
    if args.event is not None:
        json.loads(args.event)  # fail early on a malformed payload
    if not os.access(args.bootstrap, os.X_OK):
        sys.exit(f"{args.bootstrap} is not an executable file")

    runs = [one_run(args) for _ in range(args.runs)]
    inits = [r["init_ms"] for r in runs if "init_ms" in r and r["kind"] != "init_error"]
    invokes = [r["invoke_ms"] for r in runs if "invoke_ms" in r]
    kinds = {}
    for r in runs:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    good = {"init"} if args.event is None else ({"response", "error"} if args.allow_error else {"response"})
    ok = all(r["kind"] in good for r in runs)
    s_init, s_inv = summary(inits), summary(invokes)
    name = os.path.basename(os.path.dirname(os.path.abspath(args.bootstrap))) or args.bootstrap
    print(f"{name}: {len(runs)} cold starts, outcomes {kinds}, "
          f"bootstrap {os.path.getsize(args.bootstrap):,} bytes")
    if s_init:
        print(f"  init   (spawn -> first /next)    min {s_init['min']:.2f} ms  "
              f"median {s_init['median']:.2f} ms  max {s_init['max']:.2f} ms")
    if s_inv:
        print(f"  invoke (event -> /response|/error) min {s_inv['min']:.2f} ms  "
              f"median {s_inv['median']:.2f} ms")
    bad = [r for r in runs if r["kind"] not in good]
    if bad:
        print(f"  unexpected outcome: {json.dumps(bad[0])}")
    if args.json:
        print(json.dumps({
            "bench": "runtime-emulator", "bootstrap": os.path.abspath(args.bootstrap),
            "bootstrap_bytes": os.path.getsize(args.bootstrap), "runs": len(runs),
            "outcomes": kinds, "init_ms": s_init, "invoke_ms": s_inv, "ok": ok,
            "sample_body": next((r["body"] for r in runs if "body" in r), None),
        }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
