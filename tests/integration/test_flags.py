"""Serving options that can only fail at model load are checked when the server starts: a bad --dtype or
--device exits at once with a message naming it, instead of serving until the first request fails."""

import subprocess
import tempfile
import unittest

import harness


def run_server(models_dir, *args):
    cmd = [harness.SERVER, "--host", "127.0.0.1", "--port", "0", "--models_dir", models_dir, *args]
    return subprocess.run(cmd, capture_output=True, timeout=60)


class FlagsTest(unittest.TestCase):
    def test_bad_dtype_and_device_exit_at_start(self):
        with tempfile.TemporaryDirectory() as models:
            for args, message in [
                (["--dtype", "float64"], "unknown dtype 'float64'"),
                (["--dtype", ""], "unknown dtype ''"),
                (["--device", "banana"], "unknown device 'banana'"),
                (["--device", "cuda:x"], "unknown device 'cuda:x'"),
            ]:
                with self.subTest(args=args):
                    out = run_server(models, *args)
                    self.assertEqual(out.returncode, 2, out.stderr.decode())
                    self.assertIn("--device/--dtype: " + message, out.stderr.decode())
                    self.assertNotIn(b"listening on", out.stdout)

    def test_short_dtype_names_serve_the_model(self):
        # bf16 is accepted and means bfloat16 for the engine (the tiny bundle loads in it and answers).
        models = harness.models_dir_with_tiny(self)
        with harness.Server(models, "--dtype", "bf16", "--preload") as server:
            reply = server.segment(prompt="segment cat", image_data=harness.read_image(), max_new_tokens=4)
            self.assertEqual(reply.model_id, "tiny")


if __name__ == "__main__":
    unittest.main()
