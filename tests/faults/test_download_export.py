"""Faults while a model is materialised: a download cut mid-file on every try (the fake Hub drops the
connection after N bytes, however often the server resumes) and a write failure during export (the server
runs with a low RLIMIT_FSIZE and SIGXFSZ ignored, so the exporter's writes fail with EFBIG, as on a full
disk). Each time the first load fails with a clear error, nothing partial is left where the registry would
take it for a complete bundle or HF cache folder, and once the fault is gone (healthy hub; server restarted
without the limit) the model loads and answers."""

import os
import shutil
import stat
import sys
import tempfile
import unittest
from unittest import mock

import grpc

import harness
from fake_hub import COMMIT, FakeHub
from harness import pb

TINY_CKPT = os.path.join(harness.FIXTURES, "paligemma2-tiny")
VAE = os.path.join(harness.FIXTURES, "vae", "vae-oid-random.npz")
SHARD = "model-00001-of-00002.safetensors"
PROMPT = "segment cat"
TOKEN = "secret-token"
CUT_AFTER = 64 * 1024  # bytes per GET while the hub is faulty; 4 attempts x 64 KB << the 16 MB shard


def temp_dir(testcase):
    d = tempfile.mkdtemp(prefix="pg-fault-")
    testcase.addCleanup(shutil.rmtree, d, True)
    return d


def complete_bundles(models):
    """Every folder under bundles/ that holds a manifest.json (what the registry takes for a bundle)."""
    found = []
    for root, _dirs, files in os.walk(os.path.join(models, "bundles")):
        if "manifest.json" in files:
            found.append(os.path.relpath(root, os.path.join(models, "bundles")))
    return sorted(found)


def listing(server):
    return {m.id: m for m in server.list_models().models}


class InterruptedDownloadTest(unittest.TestCase):
    def test_download_cut_every_try_fails_then_succeeds_when_hub_is_healthy(self):
        models = temp_dir(self)
        hub = FakeHub(self, {"acme/tiny-pg": TINY_CKPT}, TOKEN, files={"vae-oid.npz": VAE},
                      cut_file=SHARD, cut_after=CUT_AFTER)
        token_file = os.path.join(models, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN)
        expected = harness.engine_cli(harness.IMAGE, PROMPT, 8)["text"]
        with harness.Server(models, "--hf_endpoint", hub.endpoint, "--hf_token_file", token_file,
                            "--vae_url", hub.endpoint + "/files/vae-oid.npz", "--allowed_models", "acme/*") as s:
            with self.assertRaises(grpc.RpcError) as e:
                s.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=8,
                          model_id="acme/tiny-pg", timeout=300)
            print(f"\n[download cut] {e.exception.code().name}: {e.exception.details()} "
                  f"({hub.cuts} GETs cut)")
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, e.exception.details())
            self.assertIn(f"download of acme/tiny-pg/{SHARD} failed", e.exception.details())
            self.assertGreaterEqual(hub.cuts, 2, "the server should have tried to resume")
            failed = listing(s)["acme/tiny-pg"]
            self.assertEqual(failed.state, pb.Model.FAILED)
            self.assertIn("download of", failed.error)
            # Nothing the registry would take for complete: no bundle, no refs/main (the HF cache folder
            # counts as complete only with it), no snapshot link to the cut shard, no blob under its name.
            repo = os.path.join(models, "huggingface", "models--acme--tiny-pg")
            self.assertEqual(complete_bundles(models), [])
            self.assertFalse(os.path.exists(os.path.join(repo, "refs", "main")))
            self.assertFalse(os.path.lexists(os.path.join(repo, "snapshots", COMMIT, SHARD)))
            # A failed download removes what it wrote (the blobs and the partial shard): a stream of
            # failing repos must not fill the disk.
            left = [os.path.join(r, f) for r, _d, fs in os.walk(repo) for f in fs] if os.path.isdir(repo) else []
            print(f"[download cut] files left after the failure: {left}")
            self.assertEqual(left, [])
            self.assertNotIn("acme/tiny-pg", [m.id for m in s.list_models().models
                                              if m.source in ("bundle", "hf-cache")])

            hub.cut_active = False  # the hub is healthy again: the next request downloads it afresh
            r = s.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=8,
                          model_id="acme/tiny-pg", timeout=600)
            self.assertEqual(r.text, expected)
            self.assertEqual(listing(s)["acme/tiny-pg"].state, pb.Model.READY)
            self.assertEqual(complete_bundles(models), ["acme/tiny-pg"])
            self.assertEqual([b for b in os.listdir(os.path.join(repo, "blobs")) if b.endswith(".incomplete")], [])
            with open(os.path.join(repo, "snapshots", COMMIT, SHARD), "rb") as a, \
                    open(os.path.join(TINY_CKPT, SHARD), "rb") as b:
                self.assertTrue(a.read() == b.read(), "the downloaded shard differs from the original")
            self.assertIsNone(s.proc.poll())


WRAPPER = """#!{python}
# Runs paligemma-server with RLIMIT_FSIZE = $PG_FAULT_FSIZE and SIGXFSZ ignored (both inherited by the
# exporter it starts): writes past the limit fail with EFBIG, like a full disk.
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(os.environ["PG_FAULT_FSIZE"])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv({server!r}, [{server!r}] + sys.argv[1:])
"""


class ExportWriteFailureTest(unittest.TestCase):
    def hf_cache_models_dir(self):
        """A MODELS_DIR with acme/cached as a complete HF cache folder and the VAE (loading it only exports),
        and the tiny bundle as the default model."""
        models = temp_dir(self)
        repo = os.path.join(models, "huggingface", "models--acme--cached")
        shutil.copytree(TINY_CKPT, os.path.join(repo, "snapshots", COMMIT))
        os.makedirs(os.path.join(repo, "refs"))
        with open(os.path.join(repo, "refs", "main"), "w") as f:
            f.write(COMMIT)
        shutil.copy(VAE, os.path.join(models, "vae-oid.npz"))
        shutil.copytree(harness.TINY_BUNDLE, os.path.join(models, "bundles", "tiny"))  # the default model
        return models

    def test_export_write_failure_then_restart_without_limit(self):
        models = self.hf_cache_models_dir()
        language = os.path.getsize(os.path.join(harness.TINY_BUNDLE, "language.safetensors"))
        limit = 2 << 20
        self.assertLess(limit, language)  # the export cannot fit
        wrapper = os.path.join(temp_dir(self), "limited-server")
        with open(wrapper, "w") as f:
            f.write(WRAPPER.format(python=sys.executable, server=os.path.abspath(harness.SERVER)))
        os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)

        with mock.patch.object(harness, "SERVER", wrapper):
            s = harness.Server(models, "--allow_model_control", "--allowed_models", "acme/*",
                               env={"PG_FAULT_FSIZE": str(limit)})
        with s:
            for attempt in range(2):  # LoadModel retries the failed load, which fails the same way
                with self.assertRaises(grpc.RpcError) as e:
                    s.load("acme/cached", timeout=600)
                print(f"\n[export EFBIG, attempt {attempt + 1}] {e.exception.code().name}: "
                      f"{e.exception.details()}")
                self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
                self.assertIn("exporting acme/cached failed", e.exception.details())
                failed = listing(s)["acme/cached"]
                self.assertEqual(failed.state, pb.Model.FAILED)
                self.assertIn("exporting acme/cached failed", failed.error)
                self.assertEqual(complete_bundles(models), ["tiny"])
                leftovers = os.listdir(os.path.join(models, "bundles", "acme")) \
                    if os.path.isdir(os.path.join(models, "bundles", "acme")) else []
                self.assertEqual(leftovers, [], "partial export left behind")
                self.assertIsNone(s.proc.poll(), s.log())
                # The default model still answers on this server.
                self.assertEqual(s.segment(prompt=PROMPT, image_data=harness.read_image(),
                                           max_new_tokens=2).model_id, "tiny")

        expected = harness.engine_cli(harness.IMAGE, PROMPT, 8)["text"]
        with harness.Server(models, "--allowed_models", "acme/*") as s:  # the fault is gone
            r = s.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=8,
                          model_id="acme/cached", timeout=600)
            self.assertEqual(r.text, expected)
            self.assertEqual(complete_bundles(models), ["acme/cached", "tiny"])
            self.assertEqual(os.listdir(os.path.join(models, "bundles", "acme")), ["cached"])
            self.assertEqual(listing(s)["acme/cached"].state, pb.Model.READY)


if __name__ == "__main__":
    unittest.main()
