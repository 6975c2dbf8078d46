"""The registry's download path against a fake Hub on 127.0.0.1 serving the tiny checkpoint: the first
request downloads (into the HF cache layout, resuming an interrupted file) + exports + loads + answers, the
second is served from the cache; no token -> the authentication message; unknown repo -> NOT_FOUND; an
HF cache folder already on disk is exported without any download."""

import os
import shutil
import tempfile
import unittest

import grpc

import harness
from fake_hub import COMMIT, FakeHub

TINY_CKPT = os.path.join(harness.FIXTURES, "paligemma2-tiny")
VAE = os.path.join(harness.FIXTURES, "vae", "vae-oid-random.npz")
SHARD = "model-00001-of-00002.safetensors"
PROMPT = "segment cat"
TOKEN = "secret-token"


def temp_dir(testcase):
    d = tempfile.mkdtemp(prefix="pg-hub-")
    testcase.addCleanup(shutil.rmtree, d, True)
    return d


class HubDownloadTest(unittest.TestCase):
    def start(self, models_dir, hub, token=TOKEN):
        token_file = os.path.join(models_dir, "token")
        args = ["--hf_endpoint", hub.endpoint, "--vae_url", hub.endpoint + "/files/vae-oid.npz",
                "--allowed_models", "acme/*"]  # the fake Hub's repos (the default allows google/paligemma2-*)
        if token:
            with open(token_file, "w") as f:
                f.write(token + "\n")
            args += ["--hf_token_file", token_file]
        else:
            args += ["--hf_token_file="]  # none (and HF_TOKEN is removed by the harness)
        args += ["--allow_model_control"]  # the tests load and unload models
        return harness.Server(models_dir, *args, default_model="tiny")

    def test_download_export_load_then_cache(self):
        models = temp_dir(self)
        hub = FakeHub(self, {"acme/tiny-pg": TINY_CKPT}, TOKEN, files={"vae-oid.npz": VAE}, cut_once=SHARD)
        expected = harness.engine_cli(harness.IMAGE, PROMPT, 24)["text"]
        with self.start(models, hub) as s:
            r = s.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=24,
                          model_id="acme/tiny-pg", timeout=600)
            self.assertEqual(r.text, expected)
            self.assertEqual(r.model_id, "acme/tiny-pg")
            print(f"\n[measure] first request (download + export + load + answer): "
                  f"{r.timings.total_ms:.0f} ms")
            # HF cache layout: blobs + snapshots/<commit> symlinks + refs/main; nothing half-written.
            repo = os.path.join(models, "huggingface", "models--acme--tiny-pg")
            with open(os.path.join(repo, "refs", "main")) as f:
                self.assertEqual(f.read().strip(), COMMIT)
            snap = os.path.join(repo, "snapshots", COMMIT)
            self.assertTrue(os.path.islink(os.path.join(snap, SHARD)))
            with open(os.path.join(snap, SHARD), "rb") as a, open(os.path.join(TINY_CKPT, SHARD), "rb") as b:
                self.assertEqual(a.read(), b.read())
            self.assertEqual([n for n in os.listdir(os.path.join(repo, "blobs")) if n.endswith(".incomplete")], [])
            self.assertTrue(os.path.isfile(os.path.join(models, "vae-oid.npz")))
            self.assertTrue(os.path.isfile(os.path.join(models, "bundles", "acme", "tiny-pg", "manifest.json")))
            # The cut shard was resumed with a Range request, not downloaded again from zero.
            ranged = [q for q in hub.requests if q[1].endswith(SHARD) and q[2]]
            self.assertTrue(ranged and ranged[0][2] != "bytes=0-", hub.requests)
            self.assertTrue(all(q[3] for q in hub.requests if "/resolve/" in q[1]))

            n = hub.count()
            r2 = s.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=24,
                           model_id="acme/tiny-pg")
            self.assertEqual(r2.text, expected)
            s.unload("acme/tiny-pg")
            s.load("acme/tiny-pg")  # from the exported bundle
            self.assertEqual(hub.count(), n, "served from cache: no Hub traffic")
            listed = {m.id: m for m in s.list_models().models}
            self.assertTrue(listed["acme/tiny-pg"].source == "bundle")

    def test_no_token_gives_authentication_message(self):
        models = temp_dir(self)
        hub = FakeHub(self, {"acme/tiny-pg": TINY_CKPT}, TOKEN, files={"vae-oid.npz": VAE})
        with self.start(models, hub, token=None) as s:
            with self.assertRaises(grpc.RpcError) as e:
                s.segment(prompt=PROMPT, image_data=harness.read_image(), model_id="acme/tiny-pg",
                          timeout=60)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            self.assertIn("This model requires authentication", e.exception.details())
            self.assertIn("configure a valid Hugging Face token", e.exception.details())
            failed = {m.id: m for m in s.list_models().models}["acme/tiny-pg"]
            self.assertIn("requires authentication", failed.error)

    def test_unknown_repo_not_found_and_retried(self):
        models = temp_dir(self)
        hub = FakeHub(self, {"acme/tiny-pg": TINY_CKPT}, TOKEN, files={"vae-oid.npz": VAE})
        with self.start(models, hub) as s:
            for _ in range(2):  # a failed load is reported, and retried by the next request
                with self.assertRaises(grpc.RpcError) as e:
                    s.segment(prompt=PROMPT, image_data=harness.read_image(), model_id="acme/missing",
                              timeout=60)
                self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
            config_gets = [q for q in hub.requests if q[1] == "/acme/missing/resolve/main/config.json"]
            self.assertEqual(len(config_gets), 2)

    def test_hf_cache_folder_is_exported_without_download(self):
        models = temp_dir(self)
        repo = os.path.join(models, "huggingface", "models--acme--cached")
        snap = os.path.join(repo, "snapshots", COMMIT)
        shutil.copytree(TINY_CKPT, snap)
        os.makedirs(os.path.join(repo, "refs"))
        with open(os.path.join(repo, "refs", "main"), "w") as f:
            f.write(COMMIT)
        shutil.copy(VAE, os.path.join(models, "vae-oid.npz"))
        hub = FakeHub(self, {}, TOKEN)
        with self.start(models, hub) as s:
            listed = {m.id: m for m in s.list_models().models}
            self.assertTrue(listed["acme/cached"].source == "hf-cache")
            loaded = s.load("acme/cached", timeout=600).model
            self.assertEqual(loaded.id, "acme/cached")
            self.assertEqual(hub.count(), 0)


if __name__ == "__main__":
    unittest.main()
