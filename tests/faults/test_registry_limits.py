"""The registry's bounds over the wire, against a hostile fake Hub on 127.0.0.1 (issue 12, findings 3, 4, 8
and 12's registry side). Each case is the attack as a client would make it and asserts the documented
answer; the numbers it prints are the before/after ones of docs/hardening.md.

- ids outside --allowed_models: NOT_FOUND before any Hub request, no registry entry, no metric label
  (thousands of ids leave ListModels/GetStats as they were);
- allowed but unknown ids, many at once: the failed entries kept are capped, and so are the load threads;
- a 300 MB config.json is cut at 64 MB (RSS), an index naming 200 shards is refused after 2 requests, a
  repo larger than --max_download_gb is refused before a byte of weights, a failed download leaves no
  files;
- UnloadModel of a loading model cancels it (ABORTED), a download or the exporter stops, the next
  request loads again; --load_timeout_s fails a load that runs too long;
- messages and ListModels fields a client sees carry no server path and no internal URL (a missing VAE
  is "the mask decoder (vae-oid.npz) could not be downloaded")."""

import concurrent.futures
import hashlib
import http.server
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

import grpc
import requests

import fault_util
import gw_harness
import harness
from fake_hub import COMMIT
from harness import pb

TINY_CKPT = os.path.join(harness.FIXTURES, "paligemma2-tiny")
VAE = os.path.join(harness.FIXTURES, "vae", "vae-oid-random.npz")
PROMPT = "segment cat"
HUGE_CONFIG = 300 << 20
SHARDS = 200


def temp_dir(testcase):
    d = tempfile.mkdtemp(prefix="pg-reglim-")
    testcase.addCleanup(shutil.rmtree, d, True)
    return d


class HostileHub:
    """A Hub whose repos misbehave by name (any other repo is 404):
    acme/huge-config  config.json is 300 MB          acme/many-shards  the index names 200 shards
    acme/chunked-config  300 MB, chunked (no Content-Length)
    acme/too-big      HEAD says 2 x 16 GB of shards  acme/halfway      every shard GET is a 500
    acme/slow         config.json never answers (until release())
    /files/vae-oid.npz is 404 (a missing VAE)."""

    def __init__(self, testcase):
        self.requests = []  # (method, path)
        self.sent = {}  # path -> body bytes sent
        self.lock = threading.Lock()
        self.released = threading.Event()
        testcase.addCleanup(self.released.set)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.handle(self)

            def do_GET(self):
                hub.handle(self)

        self.server = harness.HttpServer(Handler)
        testcase.addCleanup(self.server.close)
        self.endpoint = f"http://127.0.0.1:{self.server.port}"

    def count(self, prefix=""):
        with self.lock:
            return len([r for r in self.requests if r[1].startswith(prefix)])

    def release(self):
        self.released.set()

    @staticmethod
    def headers(h, status, length, extra=()):
        h.send_response(status)
        for k, v in [("ETag", '"' + hashlib.sha256(h.path.encode()).hexdigest() + '"'),
                     ("X-Repo-Commit", COMMIT), *extra]:
            h.send_header(k, v)
        h.send_header("Content-Length", str(length))
        h.end_headers()

    def send(self, h, status, body=b"", extra=()):
        self.headers(h, status, len(body), extra)
        if h.command == "GET":
            h.wfile.write(body)

    def handle(self, h):
        with self.lock:
            self.requests.append((h.command, h.path))
        parts = h.path.lstrip("/").split("/")
        if len(parts) != 5 or parts[2] != "resolve":
            return self.send(h, 404, b"not found")
        repo, name = "/".join(parts[:2]), parts[4]
        shard_names = [f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)]
        small = {"config.json": b"{}", "tokenizer.json": b"{}"}
        if repo == "acme/slow":
            self.released.wait(120)
            try:
                return self.send(h, 404, b"gone")
            except OSError:  # the server hung up (cancelled, timed out): expected
                h.close_connection = True
                return None
        if repo == "acme/huge-config" and name == "config.json":
            self.headers(h, 200, HUGE_CONFIG)
            if h.command != "GET":
                return
            chunk, sent = b" " * (1 << 20), 0
            try:
                while sent < HUGE_CONFIG:
                    h.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                h.close_connection = True
            with self.lock:
                self.sent[h.path] = sent
            return
        if repo == "acme/chunked-config" and name == "config.json":
            # No Content-Length: the size shows only while streaming.
            h.send_response(200)
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            if h.command != "GET":
                return
            chunk, sent = b" " * (1 << 20), 0
            try:
                while sent < HUGE_CONFIG:
                    h.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
                h.wfile.write(b"0\r\n\r\n")
            except OSError:
                h.close_connection = True
            with self.lock:
                self.sent[h.path] = sent
            return
        if repo == "acme/many-shards":
            index = {"weight_map": {f"w{i}": s for i, s in enumerate(shard_names)}}
            small["model.safetensors.index.json"] = json.dumps(index).encode()
        elif repo in ("acme/too-big", "acme/halfway"):
            index = {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}
            small["model.safetensors.index.json"] = json.dumps(index).encode()
            if name.endswith(".safetensors"):
                if repo == "acme/too-big":
                    if h.command == "HEAD":
                        return self.headers(h, 200, 16 << 30)
                    return self.send(h, 500, b"must not be fetched")
                if h.command == "HEAD":
                    return self.headers(h, 200, 1 << 20)
                return self.send(h, 500, b"broken")
        else:
            return self.send(h, 404, b"Repository not found")
        if name in small:
            return self.send(h, 200, small[name])
        return self.send(h, 404, b"Entry not found")


def threads_named(pid, name):
    return fault_util.thread_names(pid).count(name)


class RegistryLimitsTest(unittest.TestCase):
    def setUp(self):
        self.hub = HostileHub(self)
        self.models = harness.models_dir_with_tiny(self)

    def start(self, *args):
        # --allow_model_control: these tests call LoadModel/UnloadModel.
        s = harness.Server(self.models, "--hf_endpoint", self.hub.endpoint, "--hf_token_file=",
                           "--vae_url", self.hub.endpoint + "/files/vae-oid.npz",
                           "--allow_model_control", *args)
        self.addCleanup(s.stop)
        return s

    def stats(self, s):
        return s.rpc("ModelService", "GetStats", pb.GetStatsRequest(), pb.GetStatsResponse)

    def listing(self, s):
        return {m.id: m for m in s.list_models().models}

    def assertClientSafe(self, text):
        for secret in (self.models, self.hub.endpoint, "127.0.0.1", "http://", "/tmp/"):
            self.assertNotIn(secret, text)

    def load_error(self, s, model_id, timeout=120):
        with self.assertRaises(grpc.RpcError) as e:
            s.load(model_id, timeout=timeout)
        print(f"\n[{model_id}] {e.exception.code().name}: {e.exception.details()}")
        self.assertClientSafe(e.exception.details())
        return e.exception

    def test_ids_outside_the_allowed_list_are_refused_before_the_hub(self):
        s = self.start()
        s.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=2)  # tiny is loaded
        list_before, stats_before = s.list_models().ByteSize(), self.stats(s).ByteSize()
        threads_before = fault_util.proc_status(s.proc.pid, "Threads")
        image = harness.read_image()

        def attack(i):
            try:
                s.segment(prompt=PROMPT, image_data=image, model_id=f"attacker/evil-{i}", timeout=30)
            except grpc.RpcError as e:
                return e.code(), e.details()
            return None

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(attack, range(2000)))
        elapsed = time.monotonic() - t0
        self.assertEqual({a[0] for a in answers}, {grpc.StatusCode.NOT_FOUND})
        self.assertEqual(answers[7][1], "model attacker/evil-7 is not available on this server")
        self.assertEqual(self.hub.count(), 0, "a refused id must not reach the Hub")
        self.assertEqual(sorted(self.listing(s)), ["tiny"])
        labels = {r.model_id for r in self.stats(s).requests}
        self.assertFalse([m for m in labels if m.startswith("attacker/")], labels)
        list_after, stats_after = s.list_models().ByteSize(), self.stats(s).ByteSize()
        threads_after = fault_util.proc_status(s.proc.pid, "Threads")
        print(f"\n[measure] 2000 refused ids in {elapsed:.1f} s: ListModels {list_before} -> {list_after} B, "
              f"GetStats {stats_before} -> {stats_after} B, threads {threads_before} -> {threads_after}, "
              f"Hub requests {self.hub.count()}")
        self.assertEqual(list_after, list_before)
        self.assertLess(stats_after, stats_before + 400)  # the one new (Segment, "", NOT_FOUND) counter
        # Refused by LoadModel the same way.
        self.assertEqual(self.load_error(s, "attacker/other").code(), grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.hub.count(), 0)
        self.assertIsNone(s.proc.poll())

    def test_many_unknown_allowed_ids_keep_the_registry_and_load_threads_bounded(self):
        s = self.start("--allowed_models", "acme/*", "--max_failed_models", "32")
        peak = {"loads": 0, "threads": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak["loads"] = max(peak["loads"], threads_named(s.proc.pid, "pg-model-load"))
                peak["threads"] = max(peak["threads"], fault_util.proc_status(s.proc.pid, "Threads") or 0)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads_before = fault_util.proc_status(s.proc.pid, "Threads")

        def load(i):
            try:
                s.load(f"acme/unknown-{i}", timeout=60)
            except grpc.RpcError as e:
                return e.code()
            return grpc.StatusCode.OK

        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            codes = list(pool.map(load, range(100)))
        for i in range(100, 400):
            codes.append(load(i))
        stop.set()
        sampler.join(5)
        counts = {c.name: codes.count(c) for c in set(codes)}
        listed = self.listing(s)
        failed = [m for m in listed.values() if m.state == pb.Model.FAILED]
        print(f"\n[measure] 400 unknown allowed ids (100 at once): answers {counts}; ListModels "
              f"{len(listed)} models ({s.list_models().ByteSize()} B), GetStats {self.stats(s).ByteSize()} B; "
              f"threads {threads_before} -> peak {peak['threads']}; load threads at once <= {peak['loads']}")
        self.assertLessEqual(set(counts), {"NOT_FOUND", "RESOURCE_EXHAUSTED"})
        self.assertGreater(counts.get("NOT_FOUND", 0), 300)
        self.assertLessEqual(len(failed), 32)
        self.assertLessEqual(len(listed), 33)
        self.assertLessEqual(peak["loads"], 2)
        self.assertLessEqual(len([r for r in self.stats(s).requests if r.method == "LoadModel"]), 34)

    def huge_config(self, model_id, what):
        """Loads `model_id`, whose config.json is 300 MB, and returns the bytes the hub sent."""
        s = self.start("--allowed_models", "acme/*")
        hwm_before = fault_util.proc_status(s.proc.pid, "VmHWM")
        e = self.load_error(s, model_id)
        hwm_after = fault_util.proc_status(s.proc.pid, "VmHWM")
        sent = sum(self.hub.sent.values())
        print(f"[measure] {what}: VmHWM {hwm_before // 1024} -> {hwm_after // 1024} MB; "
              f"the hub sent {sent >> 20} MB before the server hung up")
        self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn(f"{model_id}/config.json is larger than 64 MB", e.details())
        self.assertLess(hwm_after - hwm_before, 100 * 1024)  # kB; the uncapped read took +487 MB
        return sent

    def test_huge_config_is_cut_at_the_small_file_limit(self):
        self.huge_config("acme/huge-config", "300 MB config.json")

    def test_huge_config_without_a_length_is_cut_while_streaming(self):
        sent = self.huge_config("acme/chunked-config", "300 MB chunked config.json")
        self.assertLess(sent, 150 << 20)  # cut off near the limit, not read to the end

    def test_index_with_too_many_shards_is_refused_before_any_shard(self):
        s = self.start("--allowed_models", "acme/*")
        e = self.load_error(s, "acme/many-shards")
        print(f"[measure] index naming {SHARDS} shards: {self.hub.count('/acme/many-shards')} Hub requests")
        self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("names more than 64 shards", e.details())
        self.assertEqual(self.hub.count("/acme/many-shards"), 2)  # config.json and the index
        self.assertFalse(os.path.exists(os.path.join(self.models, "huggingface", "models--acme--many-shards")))

    def test_repo_over_max_download_gb_is_refused_before_its_weights(self):
        s = self.start("--allowed_models", "acme/*")
        e = self.load_error(s, "acme/too-big")
        self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("more than this server downloads (20480 MB, --max_download_gb)", e.details())
        shard_gets = [r for r in self.hub.requests if r[0] == "GET" and r[1].endswith(".safetensors")]
        self.assertEqual(shard_gets, [])
        self.assertFalse(os.path.exists(os.path.join(self.models, "huggingface", "models--acme--too-big")))

    def test_failed_download_leaves_no_files(self):
        s = self.start("--allowed_models", "acme/*")
        e = self.load_error(s, "acme/halfway")
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("download of acme/halfway/model-1.safetensors failed", e.details())
        repo = os.path.join(self.models, "huggingface", "models--acme--halfway")
        left = [os.path.join(r, f) for r, _d, fs in os.walk(repo) for f in fs] if os.path.isdir(repo) else []
        print(f"[measure] files left after a failed download: {left}")
        self.assertEqual(left, [])
        self.assertFalse(os.path.exists(repo))

    def test_unload_of_a_loading_model_cancels_its_download(self):
        s = self.start("--allowed_models", "acme/*")
        result = {}

        def load():
            t0 = time.monotonic()
            try:
                s.load("acme/slow", timeout=120)
            except grpc.RpcError as e:
                result["code"], result["details"] = e.code(), e.details()
            result["s"] = time.monotonic() - t0

        loader = threading.Thread(target=load)
        loader.start()
        self.assertTrue(fault_util.wait_until(
            lambda: self.listing(s).get("acme/slow", pb.Model()).state == pb.Model.LOADING, 30))
        with self.assertRaises(grpc.RpcError) as e:
            s.unload("acme/slow")
        self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED, e.exception.details())
        t0 = time.monotonic()
        loader.join(60)
        self.assertFalse(loader.is_alive())
        print(f"\n[measure] load cancelled by UnloadModel: the waiting LoadModel returned "
              f"{time.monotonic() - t0:.1f} s after the unload: {result.get('code')}: {result.get('details')}")
        self.assertEqual(result["code"], grpc.StatusCode.ABORTED)
        listed = self.listing(s)["acme/slow"]
        self.assertEqual(listed.state, pb.Model.FAILED)
        self.assertIn("cancelled", listed.error)
        with self.assertRaises(grpc.RpcError) as e:
            s.unload("acme/slow")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        # The next request loads it again.
        with self.assertRaises(grpc.RpcError) as e:
            s.load("acme/slow", timeout=1)
        self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual(self.listing(s)["acme/slow"].state, pb.Model.LOADING)
        self.hub.release()

    def test_unload_of_a_loading_model_is_409_over_http(self):
        """The same conflict through the gateway: the client that unloads a loading model gets 409 and the
        usual error body; the load stops."""
        s = self.start("--allowed_models", "acme/*")
        loader = threading.Thread(target=lambda: self.load_error(s, "acme/slow"), daemon=True)
        loader.start()
        self.assertTrue(fault_util.wait_until(
            lambda: self.listing(s).get("acme/slow", pb.Model()).state == pb.Model.LOADING, 30))
        with gw_harness.Gateway(f"127.0.0.1:{s.port}") as gw:
            r = requests.post(f"{gw.base}/v1/models:unload", json={"model_id": "acme/slow"}, timeout=30)
        self.assertEqual(r.status_code, 409, r.text)
        body = r.json()
        self.assertEqual(body["status"], "error")
        self.assertIn("acme/slow", body["detail"])
        self.assertNotIn(self.hub.endpoint, body["detail"])
        loader.join(60)
        self.assertFalse(loader.is_alive())
        self.assertEqual(self.listing(s)["acme/slow"].state, pb.Model.FAILED)
        self.hub.release()

    def test_load_timeout_fails_a_stuck_load(self):
        s = self.start("--allowed_models", "acme/*", "--load_timeout_s", "2")
        t0 = time.monotonic()
        e = self.load_error(s, "acme/slow")
        print(f"[measure] --load_timeout_s 2: the load failed after {time.monotonic() - t0:.1f} s")
        self.assertEqual(e.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("--load_timeout_s", e.details())
        self.hub.release()

    def hf_cache(self, name, with_vae):
        repo = os.path.join(self.models, "huggingface", f"models--acme--{name}")
        shutil.copytree(TINY_CKPT, os.path.join(repo, "snapshots", COMMIT))
        os.makedirs(os.path.join(repo, "refs"))
        with open(os.path.join(repo, "refs", "main"), "w") as f:
            f.write(COMMIT)
        if with_vae:
            shutil.copy(VAE, os.path.join(self.models, "vae-oid.npz"))

    def test_missing_vae_is_reported_without_its_url(self):
        self.hf_cache("cached", with_vae=False)
        s = self.start("--allowed_models", "acme/*")
        e = self.load_error(s, "acme/cached")
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("the mask decoder (vae-oid.npz) could not be downloaded", e.details())
        self.assertNotIn("was not found on the Hub", e.details())
        listed = self.listing(s)
        self.assertEqual(listed["acme/cached"].source, "hf-cache")
        self.assertEqual(listed["tiny"].source, "bundle")
        for m in listed.values():
            self.assertClientSafe(m.error + " " + m.source)
        self.assertIn("vae-oid.npz", s.log())  # the full detail is in the server's log

    def test_unload_during_export_kills_the_exporter(self):
        self.hf_cache("cached", with_vae=True)
        s = self.start("--allowed_models", "acme/*")
        result = {}

        def load():
            try:
                s.load("acme/cached", timeout=300)
                result["code"] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                result["code"] = e.code()

        def phase():
            for m in self.stats(s).models:
                if m.model_id == "acme/cached":
                    return m.progress.phase
            return ""

        def children():
            try:
                with open(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children") as f:
                    own = f.read().split()
                out = []
                for tid in os.listdir(f"/proc/{s.proc.pid}/task"):
                    with open(f"/proc/{s.proc.pid}/task/{tid}/children") as f:
                        out += f.read().split()
                return sorted(set(own + out))
            except OSError:
                return []

        loader = threading.Thread(target=load)
        loader.start()
        self.assertTrue(fault_util.wait_until(lambda: phase() == "export" and children(), 120, 0.02),
                        "the export never started")
        running = children()
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            s.unload("acme/cached")
        self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED)
        loader.join(60)
        self.assertFalse(loader.is_alive())
        print(f"\n[measure] exporter (pids {running}) cancelled: the load ended "
              f"{time.monotonic() - t0:.1f} s after the unload; children now {children()}")
        self.assertEqual(result["code"], grpc.StatusCode.ABORTED)
        self.assertTrue(fault_util.wait_until(lambda: not children(), 10), children())
        self.assertFalse(os.path.exists(os.path.join(self.models, "bundles", "acme", "cached")))
        self.assertFalse(os.path.exists(os.path.join(self.models, "bundles", "acme", "cached.partial")))


if __name__ == "__main__":
    unittest.main()
