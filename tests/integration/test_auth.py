"""API keys, roles, model control and TLS, attacked over the wire on 127.0.0.1.

With --api_keys_file every paligemma.v1 RPC needs metadata "authorization: Bearer <key>": none or an
unknown key is UNAUTHENTICATED, a `user` key may Segment and ListModels, an `admin` key also GetStats and
(with --allow_model_control) LoadModel/UnloadModel. Health and reflection stay open. SIGHUP re-reads the
file; a bad file keeps the old keys. No key ever reaches the log. TLS and mutual TLS use certificates
made here with openssl (nothing private is committed)."""

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

import harness
import reflection_pb2
from harness import pb

USER_KEY = "user-0123456789abcdef-secret"
ADMIN_KEY = "admin-0123456789abcdef-secret"
WRONG_KEY = "wrong-0123456789abcdef-secret"
NEW_KEY = "fresh-0123456789abcdef-secret"
PROMPT = "segment cat"


def bearer(key):
    return (("authorization", f"Bearer {key}"),)


def write_keys(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # atomically, as a Kubernetes secret update does


def code_of(fn):
    """The gRPC code `fn` ends with (OK when it returns)."""
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


class Calls:
    """Each RPC of the API with optional bearer metadata."""

    def __init__(self, server):
        self.s = server

    def segment(self, key=None):
        return self.s.rpc("SegmentService", "Segment",
                          pb.SegmentRequest(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=4),
                          pb.SegmentResponse, 60, bearer(key) if key else None)

    def list_models(self, key=None):
        return self.s.rpc("ModelService", "ListModels", pb.ListModelsRequest(), pb.ListModelsResponse, 30,
                          bearer(key) if key else None)

    def load(self, key=None, model_id="tiny"):
        return self.s.rpc("ModelService", "LoadModel", pb.LoadModelRequest(model_id=model_id),
                          pb.LoadModelResponse, 120, bearer(key) if key else None)

    def unload(self, key=None, model_id="tiny"):
        return self.s.rpc("ModelService", "UnloadModel", pb.UnloadModelRequest(model_id=model_id),
                          pb.UnloadModelResponse, 30, bearer(key) if key else None)

    def stats(self, key=None):
        return self.s.rpc("ModelService", "GetStats", pb.GetStatsRequest(), pb.GetStatsResponse, 30,
                          bearer(key) if key else None)

    def codes(self, key):
        return {name: code_of(lambda f=getattr(self, name): f(key))
                for name in ("segment", "list_models", "load", "unload", "stats")}


class KeysTestCase(unittest.TestCase):
    """A server with a keys file (one user, one admin key) and `server_args`."""
    server_args = ()

    def setUp(self):
        self.models = harness.models_dir_with_tiny(self)
        self.keys_path = os.path.join(self.models, "api_keys")
        write_keys(self.keys_path, f"# test keys\nuser {USER_KEY}\n\nadmin {ADMIN_KEY}\n")
        self.server = harness.Server(self.models, "--api_keys_file", self.keys_path, *self.server_args)
        self.addCleanup(self.server.stop)
        self.calls = Calls(self.server)

    def tearDown(self):
        self.assertKeysNotLogged()

    def full_log(self):
        self.server._log.flush()
        with open(self.server.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def assertKeysNotLogged(self):
        log = self.full_log()
        for key in (USER_KEY, ADMIN_KEY, WRONG_KEY, NEW_KEY):
            self.assertNotIn(key, log)
            self.assertNotIn(key[:16], log)


class KeysTest(KeysTestCase):
    def test_no_key_or_wrong_key_is_unauthenticated(self):
        for metadata in (None, bearer(WRONG_KEY), (("authorization", USER_KEY),),  # no scheme
                         (("authorization", f"Basic {USER_KEY}"),), bearer(USER_KEY[:-1])):
            with self.subTest(metadata=metadata):
                with self.assertRaises(grpc.RpcError) as e:
                    self.server.rpc("SegmentService", "Segment",
                                    pb.SegmentRequest(prompt=PROMPT, image_data=harness.read_image()),
                                    pb.SegmentResponse, 30, metadata)
                self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED, e.exception.details())
                self.assertIn("API key", e.exception.details())
        self.assertEqual(set(self.calls.codes(None).values()), {grpc.StatusCode.UNAUTHENTICATED})
        self.assertEqual(set(self.calls.codes(WRONG_KEY).values()), {grpc.StatusCode.UNAUTHENTICATED})

    def test_user_key_may_segment_and_list_only(self):
        reply = self.calls.segment(USER_KEY)
        self.assertEqual(reply.model_id, "tiny")
        self.assertEqual(self.calls.list_models(USER_KEY).default_model_id, "tiny")
        for name, fn in (("UnloadModel", self.calls.unload), ("LoadModel", self.calls.load),
                         ("GetStats", self.calls.stats)):
            with self.subTest(method=name):
                with self.assertRaises(grpc.RpcError) as e:
                    fn(USER_KEY)
                self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED, e.exception.details())
        listed = {m.id: m.state for m in self.calls.list_models(USER_KEY).models}
        self.assertEqual(listed["tiny"], pb.Model.READY)  # the denied unload did nothing

    def test_admin_key_gets_stats_but_model_control_is_off(self):
        self.calls.segment(ADMIN_KEY)
        stats = self.calls.stats(ADMIN_KEY)
        self.assertIn("tiny", {m.model_id for m in stats.models})
        for fn in (self.calls.unload, self.calls.load):
            with self.assertRaises(grpc.RpcError) as e:
                fn(ADMIN_KEY)
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            self.assertIn("--allow_model_control", e.exception.details())

    def test_health_and_reflection_need_no_key(self):
        self.assertEqual(self.server.health(), 1)  # SERVING
        self.assertEqual(self.server.health("paligemma.v1.SegmentService"), 1)
        call = self.server.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        (r,) = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
        self.assertIn("paligemma.v1.SegmentService", {s.name for s in r.list_services_response.service})

    def test_denials_are_logged_and_counted(self):
        code_of(lambda: self.calls.segment(WRONG_KEY))
        code_of(lambda: self.calls.unload(USER_KEY))
        log = self.full_log()
        self.assertIn('"code":"UNAUTHENTICATED"', log)
        self.assertIn('"code":"PERMISSION_DENIED"', log)
        counted = {(r.method, r.code): r.count for r in self.calls.stats(ADMIN_KEY).requests}
        self.assertGreaterEqual(counted.get(("Segment", "UNAUTHENTICATED"), 0), 1)
        self.assertGreaterEqual(counted.get(("UnloadModel", "PERMISSION_DENIED"), 0), 1)

    def wait_for(self, predicate, what, timeout_s=10):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        self.fail(f"not within {timeout_s} s: {what}\n{self.server.log()}")

    def test_sighup_reloads_and_a_bad_file_keeps_the_old_keys(self):
        self.assertEqual(code_of(lambda: self.calls.list_models(NEW_KEY)), grpc.StatusCode.UNAUTHENTICATED)
        # The user key is replaced by a new one; the admin key stays.
        write_keys(self.keys_path, f"user {NEW_KEY}\nadmin {ADMIN_KEY}\n")
        self.server.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: code_of(lambda: self.calls.list_models(NEW_KEY)) == grpc.StatusCode.OK,
                      "the new key works after SIGHUP")
        self.assertEqual(code_of(lambda: self.calls.list_models(USER_KEY)), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(code_of(lambda: self.calls.stats(ADMIN_KEY)), grpc.StatusCode.OK)
        # A broken file (short key on line 2) is refused: the keys in force stay, the log names the line.
        write_keys(self.keys_path, f"admin {ADMIN_KEY}\nuser tooshort\n")
        self.server.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: "api keys reload failed" in self.full_log(), "the failed reload is logged")
        self.assertIn("line 2", self.full_log())
        self.assertNotIn("tooshort", self.full_log())
        self.assertEqual(code_of(lambda: self.calls.list_models(NEW_KEY)), grpc.StatusCode.OK)
        self.assertIsNone(self.server.proc.poll(), "SIGHUP must not stop the server")


class ModelControlWithKeysTest(KeysTestCase):
    server_args = ("--allow_model_control",)

    def test_admin_may_unload_and_load_user_may_not(self):
        self.assertEqual(code_of(lambda: self.calls.unload(USER_KEY)), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(code_of(lambda: self.calls.load(USER_KEY)), grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(code_of(lambda: self.calls.unload(None)), grpc.StatusCode.UNAUTHENTICATED)
        self.calls.load(ADMIN_KEY)
        self.assertEqual(self.calls.unload(ADMIN_KEY).model.state, pb.Model.AVAILABLE)


class MetricsOpenTest(KeysTestCase):
    server_args = ("--metrics_open",)

    def test_stats_need_no_key_the_rest_still_does(self):
        self.assertEqual(code_of(lambda: self.calls.stats(None)), grpc.StatusCode.OK)
        self.assertEqual(code_of(lambda: self.calls.stats(USER_KEY)), grpc.StatusCode.OK)
        self.assertEqual(code_of(lambda: self.calls.segment(None)), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(code_of(lambda: self.calls.list_models(None)), grpc.StatusCode.UNAUTHENTICATED)


class NoKeysTest(unittest.TestCase):
    def test_without_keys_model_control_is_off_by_default(self):
        models = harness.models_dir_with_tiny(self)
        with harness.Server(models) as server:
            calls = Calls(server)
            self.assertEqual(code_of(calls.segment), grpc.StatusCode.OK)
            self.assertEqual(code_of(calls.stats), grpc.StatusCode.OK)
            self.assertEqual(code_of(calls.unload), grpc.StatusCode.PERMISSION_DENIED)
            self.assertEqual(code_of(calls.load), grpc.StatusCode.PERMISSION_DENIED)
        with harness.Server(models, "--allow_model_control") as server:  # local use: anyone
            calls = Calls(server)
            self.assertEqual(calls.load().model.state, pb.Model.READY)
            self.assertEqual(calls.unload().model.state, pb.Model.AVAILABLE)

    def test_environment_fallbacks(self):
        # Containers configure the server by environment: the same switches as the flags.
        models = harness.models_dir_with_tiny(self)
        keys = os.path.join(models, "keys")
        write_keys(keys, f"admin {ADMIN_KEY}\n")
        env = {"API_KEYS_FILE": keys, "ALLOW_MODEL_CONTROL": "true", "METRICS_OPEN": "1"}
        with harness.Server(models, env=env) as server:
            calls = Calls(server)
            self.assertEqual(code_of(calls.list_models), grpc.StatusCode.UNAUTHENTICATED)
            self.assertEqual(code_of(calls.stats), grpc.StatusCode.OK)
            self.assertEqual(calls.load(ADMIN_KEY).model.state, pb.Model.READY)
            self.assertEqual(calls.unload(ADMIN_KEY).model.state, pb.Model.AVAILABLE)

    def test_a_bad_keys_file_refuses_to_start_naming_the_line_not_the_key(self):
        models = harness.models_dir_with_tiny(self)
        for text, message in [
            (f"# ok\nuser {USER_KEY}\nroot {ADMIN_KEY}\n", "line 3: the role must be user or admin"),
            (f"user {USER_KEY}\nadmin {USER_KEY}\n", "line 2: the key is listed twice"),
            (f"{ADMIN_KEY} admin\n", "line 1: the role must be user or admin"),
            ("# none\n", "holds no key"),
        ]:
            with self.subTest(message=message):
                path = os.path.join(models, "keys")
                write_keys(path, text)
                out = subprocess.run([harness.SERVER, "--host", "127.0.0.1", "--port", "0", "--models_dir",
                                      models, "--api_keys_file", path], capture_output=True, timeout=60)
                err = out.stderr.decode()
                self.assertEqual(out.returncode, 2, err)
                self.assertIn(message, err)
                self.assertNotIn(b"listening on", out.stdout)
                for key in (USER_KEY, ADMIN_KEY):
                    self.assertNotIn(key, err)
        out = subprocess.run([harness.SERVER, "--host", "127.0.0.1", "--port", "0", "--models_dir", models,
                              "--api_keys_file", os.path.join(models, "missing")], capture_output=True,
                             timeout=60)
        self.assertEqual(out.returncode, 2)
        self.assertIn("cannot read the api keys file", out.stderr.decode())


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by it;
    plus a second CA whose client certificate the server must refuse."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-days", "2", "-subj", f"/CN=pg test {ca}", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("client", "ca", "client.ext"),
                          ("rogue", "other-ca", "client.ext")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


@unittest.skipUnless(shutil.which("openssl"), "openssl makes the test certificates")
class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="pg-pki-")
        make_pki(cls.pki)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, True)

    def tls_args(self, *extra):
        return ("--tls_cert", os.path.join(self.pki, "server.pem"),
                "--tls_key", os.path.join(self.pki, "server.key"), *extra)

    def credentials(self, client=None):
        if client is None:
            return grpc.ssl_channel_credentials(root_certificates=read(self.pki, "ca.pem"))
        return grpc.ssl_channel_credentials(root_certificates=read(self.pki, "ca.pem"),
                                            private_key=read(self.pki, f"{client}.key"),
                                            certificate_chain=read(self.pki, f"{client}.pem"))

    def assertUnreachable(self, channel):
        try:
            with self.assertRaises(grpc.RpcError) as e:
                channel.unary_unary("/paligemma.v1.ModelService/ListModels",
                                    request_serializer=pb.ListModelsRequest.SerializeToString,
                                    response_deserializer=pb.ListModelsResponse.FromString)(
                                        pb.ListModelsRequest(), timeout=5)
            self.assertIn(e.exception.code(), (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED),
                          e.exception.details())
        finally:
            channel.close()

    def test_tls(self):
        models = harness.models_dir_with_tiny(self)
        with harness.Server(models, *self.tls_args(), channel_credentials=self.credentials()) as server:
            self.assertEqual(Calls(server).segment().model_id, "tiny")
            self.assertEqual(server.health(), 1)
            self.assertUnreachable(grpc.insecure_channel(server.address))
            # A client that trusts another CA refuses the server's certificate.
            self.assertUnreachable(grpc.secure_channel(
                server.address, grpc.ssl_channel_credentials(root_certificates=read(self.pki, "other-ca.pem"))))

    def test_mutual_tls(self):
        models = harness.models_dir_with_tiny(self)
        args = self.tls_args("--tls_client_ca", os.path.join(self.pki, "ca.pem"))
        with harness.Server(models, *args, channel_credentials=self.credentials("client")) as server:
            self.assertEqual(Calls(server).list_models().default_model_id, "tiny")
            self.assertUnreachable(grpc.secure_channel(server.address, self.credentials()))  # no client cert
            self.assertUnreachable(grpc.secure_channel(server.address, self.credentials("rogue")))
            self.assertUnreachable(grpc.insecure_channel(server.address))

    def test_tls_flags_are_checked_at_start(self):
        models = harness.models_dir_with_tiny(self)
        for args, message in [
            (("--tls_cert", os.path.join(self.pki, "server.pem")), "--tls_cert and --tls_key go together"),
            (("--tls_client_ca", os.path.join(self.pki, "ca.pem")), "--tls_client_ca needs --tls_cert"),
            (("--tls_cert", os.path.join(self.pki, "server.pem"), "--tls_key", os.path.join(self.pki, "nope")),
             "cannot read --tls_key"),
            (("--tls_cert", os.path.join(self.pki, "server.ext"), "--tls_key", os.path.join(self.pki, "server.key")),
             "is not PEM"),
        ]:
            with self.subTest(args=args):
                out = subprocess.run([harness.SERVER, "--host", "127.0.0.1", "--port", "0", "--models_dir", models,
                                      *args], capture_output=True, timeout=60)
                self.assertEqual(out.returncode, 2, out.stderr.decode())
                self.assertIn(message, out.stderr.decode())


class UnloadFloodTest(unittest.TestCase):
    """The attack: one anonymous UnloadModel every 0.2 s while a client segments. With model control on and
    no keys (what every server did before) the flood unloads the serving model again and again; by default
    it is refused and the model stays loaded. Throughput is printed, not asserted."""
    SECONDS = 6

    def flood(self, *args):
        models = harness.models_dir_with_tiny(self)
        with harness.Server(models, "--preload", *args) as server:
            calls = Calls(server)
            calls.segment()  # warm
            stop = threading.Event()
            codes = []

            def attacker():
                while not stop.is_set():
                    codes.append(code_of(calls.unload))
                    stop.wait(0.2)

            t = threading.Thread(target=attacker, daemon=True)
            t0 = time.monotonic()
            t.start()
            segments = []  # the victim's answers: an unload while it reloads cancels its request (ABORTED)
            while time.monotonic() - t0 < self.SECONDS:
                segments.append(code_of(calls.segment))
            elapsed = time.monotonic() - t0
            stop.set()
            t.join(10)
            state = {m.id: m.state for m in calls.list_models().models}["tiny"]
            self.assertLessEqual(set(segments), {grpc.StatusCode.OK, grpc.StatusCode.ABORTED})
            return segments.count(grpc.StatusCode.OK) / elapsed, codes, state, segments

    def test_unload_flood_before_and_after(self):
        before_rps, before_codes, _, before_segments = self.flood("--allow_model_control")
        after_rps, after_codes, after_state, after_segments = self.flood()
        unloaded_before = before_codes.count(grpc.StatusCode.OK)
        print(f"\n[measure] unload flood (1 per 0.2 s, {self.SECONDS} s): model control on, no keys (the old "
              f"default): {unloaded_before}/{len(before_codes)} unloads succeeded, {before_rps:.2f} segments/s; "
              f"default now: {after_codes.count(grpc.StatusCode.OK)}/{len(after_codes)} succeeded, "
              f"{after_rps:.2f} segments/s; victim's requests aborted: "
              f"{before_segments.count(grpc.StatusCode.ABORTED)} before, "
              f"{after_segments.count(grpc.StatusCode.ABORTED)} now")
        self.assertGreater(unloaded_before, 0)
        self.assertTrue(after_codes)
        self.assertEqual(set(after_codes), {grpc.StatusCode.PERMISSION_DENIED})
        self.assertEqual(after_state, pb.Model.READY)
        self.assertEqual(set(after_segments), {grpc.StatusCode.OK})


if __name__ == "__main__":
    unittest.main()
