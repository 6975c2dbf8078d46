"""The RPC boundary over the wire: a handler that throws (a bundle whose manifest asks for 100000x100000
images loads, and Segment's resize then fails to allocate) answers INTERNAL "internal error (request id
X)" and the server logs an error line under X with the exception's text; it never answers gRPC's UNKNOWN
"Unexpected error in RPC handling" with nothing in the log. Prompts that show nothing (Unicode white
space, zero-width characters, BOM) are INVALID_ARGUMENT "prompt is empty"."""

import json
import os
import shutil
import time
import unittest

import grpc

import harness

PROMPT = "segment cat"


class ThrowingHandlerTest(unittest.TestCase):
    def test_exception_in_segment_is_internal_with_request_id_and_logged(self):
        models = harness.models_dir_with_tiny(self)
        huge = os.path.join(models, "bundles", "huge")
        shutil.copytree(harness.TINY_BUNDLE, huge)
        path = os.path.join(huge, "manifest.json")
        with open(path) as f:
            manifest = json.load(f)
        manifest["image"]["size"] = 100000
        with open(path, "w") as f:
            json.dump(manifest, f)
        with harness.Server(models) as server:
            rid = "boundary-test-1"
            with self.assertRaises(grpc.RpcError) as e:
                server.rpc("SegmentService", "Segment",
                           harness.pb.SegmentRequest(prompt=PROMPT, image_data=harness.read_image(),
                                                     model_id="huge", max_new_tokens=4),
                           harness.pb.SegmentResponse, 120, (("x-request-id", rid),))
            code, details = e.exception.code(), e.exception.details()
            print(f"\n[huge image.size] Segment -> {code.name}: {details}")
            self.assertNotEqual(code, grpc.StatusCode.UNKNOWN, details)
            deadline = time.monotonic() + 10
            lines = []
            while not lines and time.monotonic() < deadline:
                lines = [json.loads(l) for l in server.log().splitlines() if rid in l]
                time.sleep(0.05)
            self.assertEqual(len(lines), 1, server.log())
            line = lines[0]
            self.assertEqual((line["request_id"], line["method"], line["model"]), (rid, "Segment", "huge"))
            self.assertEqual(line["code"], code.name)
            if code == grpc.StatusCode.INTERNAL:
                # The exception reached the boundary: the client gets the id, the log the text.
                self.assertEqual(details, f"internal error (request id {rid})")
                self.assertEqual(line["level"], "error")
                self.assertIn("exception: ", line["detail"])
                print(f"[huge image.size] logged: {line['detail']}")
            else:
                # A manifest bound refuses the bundle at load instead (the registry's check).
                self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, details)
                self.assertIn("image.size", details)
            # The server is up and the good model answers.
            self.assertIsNone(server.proc.poll())
            self.assertEqual(server.segment(prompt=PROMPT, image_data=harness.read_image(),
                                            max_new_tokens=4).model_id, "tiny")


class BlankPromptTest(harness.ServerTestCase):
    def test_unicode_blank_prompts_are_invalid(self):
        for prompt in ["\v", "\f", "\u00a0", "\u3000", "\u200b", "\ufeff", " \u2028\t\u205f ", "\u180e\u2060",
                       "\u0085\u1680\u2000\u200a\u2029\u202f\u200c\u200d"]:
            with self.subTest(prompt=ascii(prompt)):
                with self.assertRaises(grpc.RpcError) as e:
                    self.server.segment(prompt=prompt, image_data=harness.read_image(), max_new_tokens=4)
                self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertTrue(e.exception.details().startswith("prompt is empty"), e.exception.details())
        # Text next to them is a prompt.
        r = self.server.segment(prompt="\u00a0segment cat\u200b", image_data=harness.read_image(), max_new_tokens=4)
        self.assertEqual(r.model_id, "tiny")


if __name__ == "__main__":
    unittest.main()
