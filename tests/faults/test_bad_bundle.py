"""Corrupted bundles next to a good one in MODELS_DIR/bundles/: a truncated language.pt, a bad
manifest.json, a manifest with a shape past its bound (image.size 100000: it used to load as READY and
make every Segment fail with UNKNOWN) and a FIFO in place of a module (it used to block the loader's
open() forever: LOADING, and no unload). Loading any fails with its cause (ListModels state FAILED + error; Segment a clear
FAILED_PRECONDITION-type error, never UNKNOWN/INTERNAL or a crash), retries fail the same way, the good
model keeps answering and the server stays up."""

import json
import os
import shutil
import unittest

import grpc

import harness
from harness import pb

PROMPT = "segment cat"


def truncate(path, keep_fraction=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep_fraction))


class BadBundleTest(unittest.TestCase):
    def setUp(self):
        self.models = harness.models_dir_with_tiny(self)
        bundles = os.path.join(self.models, "bundles")
        for name in ("truncated", "badmanifest", "nomanifestfield", "hugeimage", "fifo"):
            shutil.copytree(harness.TINY_BUNDLE, os.path.join(bundles, name))
        truncate(os.path.join(bundles, "truncated", "language.pt"))
        with open(os.path.join(bundles, "badmanifest", "manifest.json"), "w") as f:
            f.write('{"format_version": 1, "image": {"size": ')  # cut JSON
        path = os.path.join(bundles, "nomanifestfield", "manifest.json")
        with open(path) as f:
            manifest = json.load(f)
        del manifest["text"]  # valid JSON, a required section missing
        with open(path, "w") as f:
            json.dump(manifest, f)
        path = os.path.join(bundles, "hugeimage", "manifest.json")
        with open(path) as f:
            manifest = json.load(f)
        manifest["image"]["size"] = 100000
        with open(path, "w") as f:
            json.dump(manifest, f)
        os.remove(os.path.join(bundles, "fifo", "vision.pt"))
        os.mkfifo(os.path.join(bundles, "fifo", "vision.pt"))
        self.server = harness.Server(self.models, "--allow_model_control")  # LoadModel is called
        self.addCleanup(self.server.stop)

    def assertAlive(self):
        self.assertIsNone(self.server.proc.poll(), "the server exited:\n" + self.server.log())

    def segment_good(self):
        r = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=4,
                                model_id="tiny")
        self.assertEqual(r.model_id, "tiny")

    def test_bad_bundles_fail_cleanly_and_good_one_answers(self):
        self.segment_good()
        causes = {"truncated": "language.pt", "badmanifest": "manifest", "nomanifestfield": "manifest",
                  "hugeimage": "'image.size' (100000) must be between 1 and 1792",
                  "fifo": "vision.pt, which is not a regular file"}
        for attempt in range(2):  # a failed load is retried by the next request, and fails the same way
            for model_id, cause in causes.items():
                with self.subTest(model=model_id, attempt=attempt):
                    with self.assertRaises(grpc.RpcError) as e:
                        self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=4,
                                            model_id=model_id, timeout=120)
                    code, details = e.exception.code(), e.exception.details()
                    print(f"\n[{model_id}] Segment -> {code.name}: {details}")
                    self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, details)
                    self.assertIn(f"model {model_id} failed to load", details)
                    self.assertIn(cause, details)
                    self.assertNotIn(self.models, details)  # no server path in what a client sees
                    self.assertAlive()
                    listed = {m.id: m for m in self.server.list_models().models}
                    self.assertEqual(listed[model_id].state, pb.Model.FAILED, listed[model_id])
                    self.assertIn(cause, listed[model_id].error)
                    self.assertNotIn(self.models, listed[model_id].error)
                    self.assertEqual(listed[model_id].source, "bundle")
                    # The good model keeps answering between the failures.
                    self.segment_good()
        # The FIFO bundle is FAILED, not LOADING forever: nothing to unload.
        with self.assertRaises(grpc.RpcError) as e:
            self.server.unload("fifo")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND, e.exception.details())
        # LoadModel reports the same failure.
        with self.assertRaises(grpc.RpcError) as e:
            self.server.load("truncated")
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION, e.exception.details())
        listed = {m.id: m for m in self.server.list_models().models}
        self.assertEqual(listed["tiny"].state, pb.Model.READY)
        self.assertEqual(self.server.health("paligemma.v1.SegmentService"), 1)  # SERVING
        self.assertAlive()


if __name__ == "__main__":
    unittest.main()
