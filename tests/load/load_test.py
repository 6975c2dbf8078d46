#!/usr/bin/python3
"""Bounded load test through the REST gateway, loopback only (issue 7, "Load test").

Starts build/paligemma-server (tiny bundle, --allowed_url_cidrs 127.0.0.1/32 so that image_url requests to
the local file server pass the SSRF guard) and build/paligemma-gateway on 127.0.0.1, or uses a running pair
(--gateway URL --server-pid PID), then runs --clients concurrent clients (default 32) for --seconds
(PG_LOAD_SECONDS, default 60) after a warm-up, with a mix of
  valid:   multipart uploads (PNG and JPEG of several sizes made from tests/fixtures/images) and image_url
           requests to a local file server,
  invalid: missing prompt, garbage image bytes, unknown model id, bad max_new_tokens (text and out of
           range), an oversized upload, a private URL -- each must get its documented 4xx and the JSON
           body {"status": "error", "detail": "..."}.
It samples the server's RSS (VmRSS) and thread count every second and fails (exit 1) on any violation:
an error for a valid request, a wrong status or body for an invalid one, any 5xx, or RSS not flat
(its peak in the last quarter above its peak in the first half + max(48 MB, 8 %)). Prints a summary and writes it as JSON (--json).
It stops by itself (a watchdog ends it if anything hangs) and kills the processes it started on any exit.

  /usr/bin/python3 tests/load/load_test.py --seconds 60 --json build/artifacts/load.json
  PG_LOAD_SECONDS=600 /usr/bin/python3 tests/load/load_test.py --json build/artifacts/load-600s.json
"""

import argparse
import collections
import ctypes
import http.server
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("PG_BUILD_DIR", os.path.join(ROOT, "build"))
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
SERVER = os.environ.get("PG_SERVER", os.path.join(BUILD, "paligemma-server"))
GATEWAY = os.environ.get("PG_GATEWAY", os.path.join(BUILD, "paligemma-gateway"))
TINY_BUNDLE = os.environ.get("PG_TINY_BUNDLE", os.path.join(BUILD, "tiny-bundle"))
FIXTURES = os.environ.get("PG_FIXTURES_DIR", os.path.join(ROOT, "tests", "fixtures"))

PROMPTS = ["segment cat", "detect cat", "segment left ear", "segment nose", "detect eye ; nose"]
GATEWAY_BODY_LIMIT = 25 << 20  # the gateway's default --max_body_bytes
REQUEST_TIMEOUT_S = 120
MB = 1 << 20

# Kinds of request: name -> (weight, valid). Invalid kinds list the statuses they must get.
VALID_KINDS = {"upload": 45, "url": 25}
INVALID_KINDS = {  # name: (weight, expected statuses)
    "missing_prompt": (5, {400}),
    "garbage_image": (5, {400}),
    "unknown_model": (4, {404}),
    "bad_max_new_tokens_text": (4, {400}),
    "bad_max_new_tokens_range": (4, {400}),
    "oversized_upload": (1, {413}),
    "private_url": (5, {403}),
}


def log(*args):
    print("load:", *args, flush=True)


# --- processes -------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL if this driver dies, even by SIGKILL."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Child:
    """A started program whose first stdout line is "listening on HOST:PORT"; killed by stop()."""

    def __init__(self, name, cmd, log_path, start_timeout_s=60):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     preexec_fn=_die_with_parent)
        line = {}
        t = threading.Thread(target=lambda: line.update(text=self.proc.stdout.readline().decode()),
                             daemon=True)
        t.start()
        t.join(start_timeout_s)
        text = line.get("text", "")
        if not text.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"{name} did not start: {text!r}\n{self.tail()}")
        self.address = text.split()[-1]
        self.port = int(self.address.rsplit(":", 1)[1])

    def tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc.stdout:
            self.proc.stdout.close()
        if not self._log.closed:
            self._log.close()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class NotFoundHub(http.server.BaseHTTPRequestHandler):
    """--hf_endpoint for the unknown-model requests: every repo is missing (404), like the real Hub."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        body = b"Repository not found"
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_GET = do_HEAD = _answer


def http_server(handler):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


# --- inputs ----------------------------------------------------------------------------------------------

def make_images(directory):
    """PNG and JPEG variants of the fixture photos at several sizes: name -> (bytes, mime)."""
    out = {}
    sources = {n: Image.open(os.path.join(FIXTURES, "images", n)).convert("RGB")
               for n in ("chelsea.png", "coffee.png")}
    variants = [("chelsea.png", None, "PNG"), ("coffee.png", None, "PNG"), ("chelsea.png", (96, 64), "PNG"),
                ("chelsea.png", None, "JPEG"), ("coffee.png", (1280, 960), "JPEG"),
                ("coffee.png", (200, 150), "JPEG")]
    for src, size, fmt in variants:
        img = sources[src] if size is None else sources[src].resize(size)
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        ext = "png" if fmt == "PNG" else "jpg"
        name = f"{src.split('.')[0]}-{img.width}x{img.height}.{ext}"
        data = buf.getvalue()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
        out[name] = (data, "image/png" if fmt == "PNG" else "image/jpeg")
    return out


# --- the load --------------------------------------------------------------------------------------------

def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return round(s[k], 1)


class Load:
    def __init__(self, args, gateway_url, image_base, images):
        self.args = args
        self.segment_url = gateway_url.rstrip("/") + "/segment"
        self.image_base = image_base
        self.images = images
        self.names = sorted(images)
        self.oversized = b"\0" * (GATEWAY_BODY_LIMIT + MB)
        self.lock = threading.Lock()
        self.measuring = False
        self.stop = threading.Event()
        self.served = collections.Counter()       # kind -> requests answered as expected (measured)
        self.warmup_served = collections.Counter()
        self.latency_ms = []                      # valid requests, measured period
        self.violations = []                      # (kind, status, detail)
        self.status_5xx = 0
        self.violation_count = collections.Counter()
        kinds = [(k, w) for k, w in VALID_KINDS.items()] + [(k, w) for k, (w, _) in INVALID_KINDS.items()]
        self.kinds = [k for k, _ in kinds]
        self.weights = [w for _, w in kinds]

    def request(self, kind, rng):
        name = rng.choice(self.names)
        data, mime = self.images[name]
        tokens = str(rng.randint(self.args.min_tokens, self.args.max_tokens))
        prompt = rng.choice(PROMPTS)
        form = {"prompt": prompt, "max_new_tokens": tokens}
        files = None
        if kind == "upload":
            files = {"image_file": (name, data, mime)}
        elif kind == "url":
            form["image_url"] = f"{self.image_base}/{name}"
        elif kind == "missing_prompt":
            del form["prompt"]
            files = {"image_file": (name, data, mime)}
        elif kind == "garbage_image":
            files = {"image_file": ("x.png", os.urandom(rng.randint(16, 4096)), "image/png")}
        elif kind == "unknown_model":
            form["model_id"] = "acme/no-such-model"
            files = {"image_file": (name, data, mime)}
        elif kind == "bad_max_new_tokens_text":
            form["max_new_tokens"] = "lots"
            files = {"image_file": (name, data, mime)}
        elif kind == "bad_max_new_tokens_range":
            form["max_new_tokens"] = "100000"
            form["image_url"] = f"{self.image_base}/{name}"
        elif kind == "oversized_upload":
            files = {"image_file": ("big.png", self.oversized, "image/png")}
        elif kind == "private_url":
            form["image_url"] = rng.choice(["http://10.1.2.3/cat.png", "http://169.254.169.254/latest/x",
                                            "http://192.168.0.1/a.jpg"])
        return requests.post(self.segment_url, data=form, files=files, timeout=REQUEST_TIMEOUT_S)

    def check(self, kind, response):
        """None if the answer is what `kind` must get, else a description of what is wrong."""
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}, body not JSON: {response.text[:200]!r}"
        if kind in VALID_KINDS:
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text[:300]}"
            if not isinstance(body.get("masks"), list) or not isinstance(body.get("image"), str):
                return f"200 without masks/image: {response.text[:200]}"
            return None
        expected = INVALID_KINDS[kind][1]
        if response.status_code not in expected:
            return f"HTTP {response.status_code}, expected {sorted(expected)}: {response.text[:300]}"
        if set(body) != {"status", "detail"} or body["status"] != "error" or \
                not isinstance(body["detail"], str) or not body["detail"]:
            return f"error body not {{status: error, detail}}: {response.text[:300]}"
        return None

    def client(self, index):
        rng = random.Random(self.args.seed * 1000 + index)
        while not self.stop.is_set():
            kind = rng.choices(self.kinds, self.weights)[0]
            measuring = self.measuring
            t0 = time.monotonic()
            try:
                response = self.request(kind, rng)
                problem = self.check(kind, response)
                status = response.status_code
            except requests.RequestException as e:
                problem, status = f"{type(e).__name__}: {e}", None
            ms = (time.monotonic() - t0) * 1000
            with self.lock:
                if status is not None and status >= 500:
                    self.status_5xx += 1
                if problem:
                    self.violation_count[kind] += 1
                    if len(self.violations) < 50:
                        self.violations.append({"kind": kind, "status": status, "problem": problem,
                                                "warmup": not measuring})
                elif measuring and self.measuring:
                    self.served[kind] += 1
                    if kind in VALID_KINDS:
                        self.latency_ms.append(ms)
                elif not measuring:
                    self.warmup_served[kind] += 1


class Sampler:
    """VmRSS and Threads of a process (and optionally another), once a second."""

    def __init__(self, pid, other_pid=None):
        self.pid, self.other_pid = pid, other_pid
        self.samples = []  # (t, rss_kb, threads, other_rss_kb)
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def read(pid):
        fields = {}
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    fields[k] = v.split()
        except OSError:
            return None, None
        return int(fields["VmRSS"][0]), int(fields["Threads"][0])

    def run(self):
        while not self.stop.is_set():
            rss, threads = self.read(self.pid)
            other = self.read(self.other_pid)[0] if self.other_pid else None
            if rss is not None:
                self.samples.append((time.monotonic() - self.t0, rss, threads, other))
            self.stop.wait(1.0)

    def at(self, t):
        """The last sample taken at or before t (seconds since the sampler started)."""
        best = None
        for s in self.samples:
            if s[0] <= t:
                best = s
        return best or (self.samples[0] if self.samples else None)


def run(args, work):
    children = []
    hub = files = None
    try:
        images = make_images(work)
        files = http_server(type("Files", (QuietFiles,), {
            "__init__": lambda self, *a, **k: QuietFiles.__init__(self, *a, directory=work, **k)}))
        image_base = f"http://127.0.0.1:{files.server_address[1]}"
        if args.gateway:
            gateway_url, server_pid, gateway_pid = args.gateway, args.server_pid, None
            INVALID_KINDS["unknown_model"] = (INVALID_KINDS["unknown_model"][0], {403, 404})
        else:
            for p in (SERVER, GATEWAY, os.path.join(TINY_BUNDLE, "manifest.json")):
                if not os.path.exists(p):
                    raise RuntimeError(f"{p} is missing: build first (cmake --build build; "
                                       f"ctest --test-dir build -R export_tiny_bundle)")
            models = os.path.join(work, "models")
            shutil.copytree(TINY_BUNDLE, os.path.join(models, "bundles", "tiny"))
            hub = http_server(NotFoundHub)
            server = Child("server", [SERVER, "--host", "127.0.0.1", "--port", "0", "--models_dir", models,
                                      "--default_model", "tiny", "--allowed_url_cidrs", "127.0.0.1/32",
                                      "--hf_endpoint", f"http://127.0.0.1:{hub.server_address[1]}",
                                      "--hf_token_file=", "--vae_url", f"{image_base}/none.npz",
                                      *args.server_arg],
                           os.path.join(work, "server.log"))
            children.append(server)
            gateway = Child("gateway", [GATEWAY, "--grpc_endpoint", server.address, "--host", "127.0.0.1",
                                        "--port", "0", "--access_log=false"],
                            os.path.join(work, "gateway.log"), start_timeout_s=30)
            children.append(gateway)
            gateway_url = f"http://127.0.0.1:{gateway.port}"
            server_pid, gateway_pid = server.proc.pid, gateway.proc.pid
            deadline = time.monotonic() + 60
            while requests.get(f"{gateway_url}/readyz", timeout=10).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("gateway /readyz did not turn 200 within 60 s")
                time.sleep(0.2)
        log(f"gateway {gateway_url}, server pid {server_pid}, {args.clients} clients, "
            f"{args.warmup} s warm-up + {args.seconds} s, max_new_tokens {args.min_tokens}-{args.max_tokens}")

        load = Load(args, gateway_url, image_base, images)
        sampler = Sampler(server_pid, gateway_pid) if server_pid else None
        threads = [threading.Thread(target=load.client, args=(i,), daemon=True) for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.warmup)
        t_start = time.monotonic() - sampler.t0 if sampler else 0
        with load.lock:
            load.measuring = True
        m0 = time.monotonic()
        time.sleep(args.seconds)
        with load.lock:
            load.measuring = False
        elapsed = time.monotonic() - m0
        t_end = time.monotonic() - sampler.t0 if sampler else 0
        load.stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT_S + 10)
        stuck = sum(t.is_alive() for t in threads)
        if sampler:
            time.sleep(1.1)  # one more sample after the last request
            sampler.stop.set()
            sampler.thread.join(5)
        for c in children:
            if c.proc.poll() is not None:
                load.violations.append({"kind": c.name, "status": None, "warmup": False,
                                        "problem": f"{c.name} exited with {c.proc.returncode}"})
        report = summarize(args, load, sampler, t_start, t_end, elapsed, stuck)
        if not report["ok"]:
            for c in children:
                report[f"{c.name}_log_tail"] = c.tail()
        return report
    finally:
        for c in reversed(children):
            c.stop()
        for s in (hub, files):
            if s is not None:
                s.shutdown()
                s.server_close()


def summarize(args, load, sampler, t_start, t_end, elapsed, stuck):
    valid = sum(load.served[k] for k in VALID_KINDS)
    invalid = sum(load.served[k] for k in INVALID_KINDS)
    errors_valid = sum(load.violation_count[k] for k in VALID_KINDS)
    wrong_invalid = sum(load.violation_count[k] for k in INVALID_KINDS)
    report = {
        "seconds": round(elapsed, 1), "warmup_seconds": args.warmup, "clients": args.clients,
        "max_new_tokens": [args.min_tokens, args.max_tokens],
        "served_by_kind": dict(sorted(load.served.items())),
        "warmup_served": sum(load.warmup_served.values()),
        "valid_served": valid, "invalid_served": invalid,
        "errors_for_valid_requests": errors_valid,
        "wrong_status_for_invalid_requests": wrong_invalid,
        "http_5xx": load.status_5xx,
        "violations_by_kind": dict(load.violation_count),
        "violations": load.violations,
        "client_threads_stuck": stuck,
        "latency_valid_ms": {"p50": percentile(load.latency_ms, 50), "p95": percentile(load.latency_ms, 95),
                             "p99": percentile(load.latency_ms, 99),
                             "max": round(max(load.latency_ms), 1) if load.latency_ms else None},
        "throughput_valid_rps": round(valid / elapsed, 2) if elapsed else 0,
        "throughput_all_rps": round((valid + invalid) / elapsed, 2) if elapsed else 0,
    }
    failures = []
    if errors_valid:
        failures.append(f"{errors_valid} valid requests failed")
    if wrong_invalid:
        failures.append(f"{wrong_invalid} invalid requests got a wrong answer")
    if load.status_5xx:
        failures.append(f"{load.status_5xx} answers were 5xx")
    if stuck:
        failures.append(f"{stuck} client threads did not finish")
    if valid == 0:
        failures.append("no valid request was served")
    if any(v["kind"] in ("server", "gateway") for v in load.violations):
        failures.append("a child process exited during the load")
    if sampler and sampler.samples:
        measured = [s for s in sampler.samples if t_start <= s[0] <= t_end + 1.5]
        start, mid, end = sampler.at(t_start), sampler.at((t_start + t_end) / 2), sampler.samples[-1]
        peak = max(measured or sampler.samples, key=lambda s: s[1])
        # RSS under this load swings by +-30 MB from second to second (allocator arenas, gRPC threads
        # coming and going), so single samples are compared by their peaks: the highest RSS of the
        # last quarter of the window against the highest of its first half. A leak moves both the
        # level and the peaks; a plateau reached during the first half does not fail.
        span = max(t_end - t_start, 1e-9)
        first_half = [s for s in measured if s[0] <= t_start + span / 2] or measured or sampler.samples
        last_quarter = [s for s in measured if s[0] >= t_end - span / 4] or [end]
        base_kb = max(s[1] for s in first_half)
        final_kb = max(s[1] for s in last_quarter)
        allowed_kb = base_kb + max(48 * 1024, base_kb * 8 // 100)
        report["server_rss_mb"] = {"after_warmup": round(start[1] / 1024, 1), "middle": round(mid[1] / 1024, 1),
                                   "end": round(end[1] / 1024, 1), "max": round(peak[1] / 1024, 1),
                                   "first_half_max": round(base_kb / 1024, 1),
                                   "last_quarter_max": round(final_kb / 1024, 1),
                                   "flat_limit": round(allowed_kb / 1024, 1)}
        report["server_threads"] = {"after_warmup": start[2], "middle": mid[2], "end": end[2],
                                    "max": max(s[2] for s in measured or sampler.samples)}
        if end[3] is not None and start[3] is not None:
            report["gateway_rss_mb"] = {"after_warmup": round(start[3] / 1024, 1), "end": round(end[3] / 1024, 1),
                                        "max": round(max(s[3] or 0 for s in sampler.samples) / 1024, 1)}
        report["rss_samples"] = [[round(s[0], 1), s[1], s[2]] for s in sampler.samples]
        report["rss_flat"] = final_kb <= allowed_kb
        if not report["rss_flat"]:
            failures.append(f"server RSS grew: peak {final_kb // 1024} MB in the last quarter against "
                            f"{base_kb // 1024} MB in the first half (limit {allowed_kb // 1024} MB)")
    else:
        report["rss_flat"] = None
    report["failures"] = failures
    report["ok"] = not failures
    return report


def print_summary(report):
    p = lambda *a: print(*a, flush=True)  # noqa: E731
    p("")
    p(f"==== load test: {report['clients']} clients, {report['seconds']} s measured "
      f"(after {report['warmup_seconds']} s warm-up, {report['warmup_served']} requests)")
    p(f"served by kind:       {report['served_by_kind']}")
    p(f"valid served:         {report['valid_served']}  ({report['throughput_valid_rps']} req/s; "
      f"all kinds {report['throughput_all_rps']} req/s)")
    lat = report["latency_valid_ms"]
    p(f"valid latency ms:     p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}")
    p(f"errors (valid):       {report['errors_for_valid_requests']}")
    p(f"wrong status (inval): {report['wrong_status_for_invalid_requests']}")
    p(f"5xx:                  {report['http_5xx']}")
    if "server_rss_mb" in report:
        r = report["server_rss_mb"]
        p(f"server RSS MB:        after warm-up {r['after_warmup']}  middle {r['middle']}  end {r['end']}  "
          f"max {r['max']}")
        p(f"server RSS peaks MB:  first half {r['first_half_max']}  last quarter {r['last_quarter_max']}  "
          f"(flat limit {r['flat_limit']}: {'flat' if report['rss_flat'] else 'NOT FLAT'})")
        t = report["server_threads"]
        p(f"server threads:       after warm-up {t['after_warmup']}  middle {t['middle']}  end {t['end']}  "
          f"max {t['max']}")
    if "gateway_rss_mb" in report:
        g = report["gateway_rss_mb"]
        p(f"gateway RSS MB:       after warm-up {g['after_warmup']}  end {g['end']}  max {g['max']}")
    for v in report["violations"][:10]:
        p(f"  violation: {v}")
    for name in ("server", "gateway"):
        if f"{name}_log_tail" in report:
            p(f"--- {name} log (tail):\n{report[name + '_log_tail']}")
    p("RESULT: " + ("ok" if report["ok"] else "FAILED: " + "; ".join(report["failures"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("PG_LOAD_SECONDS", "60")),
                    help="measured duration (PG_LOAD_SECONDS, default 60; the full run is 600)")
    ap.add_argument("--warmup", type=float, default=float(os.environ.get("PG_LOAD_WARMUP", "30")),
                    help="warm-up under the same load before measuring (default 30 s: RSS settles "
                         "about 30 s into the load)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--min-tokens", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--gateway", help="use this running gateway (e.g. http://127.0.0.1:8000) instead of "
                                      "starting one; its server must allow 127.0.0.1 image URLs")
    ap.add_argument("--server-pid", type=int, help="with --gateway: the server's pid, for RSS sampling")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra flag for the started server (repeat), e.g. --server-arg=--max_batch=4")
    args = ap.parse_args()
    if args.server_pid and not args.gateway:
        ap.error("--server-pid needs --gateway")

    # Any way out (SIGTERM, SIGINT, SIGHUP, an exception) runs the finally blocks that stop the children;
    # a SIGKILL of this driver kills them through PR_SET_PDEATHSIG.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    # Watchdog: the run ends by itself even if something hangs.
    limit = args.warmup + args.seconds + REQUEST_TIMEOUT_S + 180
    watchdog = threading.Timer(limit, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()

    work = tempfile.mkdtemp(prefix="pg-load-")
    try:
        report = run(args, work)
    except SystemExit:
        log("stopped before the end")
        raise
    finally:
        watchdog.cancel()
        shutil.rmtree(work, True)
    print_summary(report)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        log(f"summary written to {args.json}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
