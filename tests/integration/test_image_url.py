"""image_url: fetched from a local HTTP server (only with --allow_private_urls) giving the same answer as
image bytes; size and redirect limits; decompression bombs refused without the server's memory growing.

The SSRF guard (issue 7): every spelling a URL parser or resolver reads as loopback, private, link-local
or metadata - numeric forms, IPv6 and IPv4-mapped/NAT64 forms, trailing dots, names from /etc/hosts,
userinfo tricks - is refused, directly and as the target of a redirect, and no connection ever reaches
a sentinel listener on 127.0.0.1 / ::1 at the port each URL names."""

import os
import shutil
import socket
import tempfile
import threading
import time
import unittest
import zlib

import grpc

import harness

PROMPT = "segment cat"
PD = grpc.StatusCode.PERMISSION_DENIED
IA = grpc.StatusCode.INVALID_ARGUMENT


class AllowedImageUrlTest(harness.ServerTestCase):
    server_args = ("--allow_private_urls", "--max_image_bytes", "2000000", "--max_redirects", "2")

    def setUp(self):
        self.http = harness.file_server(self, os.path.join(harness.FIXTURES, "images"))

    def test_url_same_answer_as_bytes(self):
        by_bytes = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=24)
        by_url = self.server.segment(prompt=PROMPT, image_url=self.http.url("/chelsea.png"), max_new_tokens=24)
        self.assertEqual(by_url.text, by_bytes.text)
        self.assertEqual(by_url.image, by_bytes.image)
        self.assertGreater(by_url.timings.fetch_ms, 0)

    def test_redirect_followed_within_limit(self):
        hop = harness.redirect_server(self, self.http.url("/chelsea.png"))
        r = self.server.segment(prompt=PROMPT, image_url=hop.url("/x"), max_new_tokens=2)
        self.assertEqual((r.width, r.height), (451, 300))

    def test_too_many_redirects(self):
        hop1 = harness.redirect_server(self, self.http.url("/chelsea.png"))
        hop2 = harness.redirect_server(self, hop1.url("/a"))
        hop3 = harness.redirect_server(self, hop2.url("/b"))
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_url=hop3.url("/c"), max_new_tokens=2)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("redirect", e.exception.details())

    def test_oversized_body_refused_while_streaming(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "big.png"), "wb") as f:
            f.write(b"\0" * 3_000_000)
        big = harness.file_server(self, d)
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_url=big.url("/big.png"), max_new_tokens=2)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("limit", e.exception.details())

    def test_http_error_and_unreachable(self):
        for url in (self.http.url("/missing.png"), "http://127.0.0.1:9/x.png"):
            with self.assertRaises(grpc.RpcError) as e:
                self.server.segment(prompt=PROMPT, image_url=url, max_new_tokens=2)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, url)

    def test_decompression_bombs_refused_without_memory_growth(self):
        """PNG, JPEG, GIF and BMP files of a few hundred bytes whose headers claim 30000 x 30000 (2.7 GB of
        RGB), by image_url and by image_data: INVALID_ARGUMENT "too large", and the server's peak RSS
        (VmHWM) grows by far less than one such pixel buffer."""
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        bombs = decompression_bombs(30000)
        for name, data in bombs.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        files = harness.file_server(self, d)
        # The first request of a server grows its peak RSS by ~170 MB whatever it holds (lazy
        # initialisation): one undecodable request first, so that what is measured is the bombs.
        with self.assertRaises(grpc.RpcError):
            self.server.segment(prompt=PROMPT, image_data=b"not an image", max_new_tokens=2)
        before = vm_hwm_kib(self.server.proc.pid)
        for name, data in bombs.items():
            for source in ({"image_url": files.url("/" + name)}, {"image_data": data}):
                with self.subTest(file=name, source=next(iter(source))):
                    with self.assertRaises(grpc.RpcError) as e:
                        self.server.segment(prompt=PROMPT, max_new_tokens=2, **source)
                    self.assertEqual(e.exception.code(), IA, e.exception.details())
                    self.assertIn("image is too large: 30000x30000 exceeds", e.exception.details())
        after = vm_hwm_kib(self.server.proc.pid)
        print(f"\n[measure] server VmHWM {before} KiB -> {after} KiB after {2 * len(bombs)} bomb requests "
              f"({', '.join(f'{n} {len(b)} B' for n, b in bombs.items())})")
        self.assertLess(after - before, 64 * 1024)


class FetchAdmissionTest(harness.ServerTestCase):
    """image_url fetches run under the admission ticket: with --max_concurrent 1 --max_queue 2, eight
    simultaneous image_url requests download one at a time, and the five refused as busy never reach the
    HTTP server (before, all eight downloaded at once and five were refused only afterwards)."""
    server_args = ("--allow_private_urls", "--max_concurrent", "1", "--max_queue", "2")

    def test_fetches_bounded_and_refused_before_download(self):
        with open(harness.IMAGE, "rb") as f:
            body = f.read()
        state = {"now": 0, "peak": 0, "total": 0}
        lock = threading.Lock()

        class Slow(harness.QuietHandler):
            def do_GET(self):
                with lock:
                    state["now"] += 1
                    state["total"] += 1
                    state["peak"] = max(state["peak"], state["now"])
                try:
                    time.sleep(1.0)  # a slow origin: the download holds its slot for a second
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with lock:
                        state["now"] -= 1

        http = harness.HttpServer(Slow)
        self.addCleanup(http.close)
        results = [None] * 8

        def call(i):
            try:
                self.server.segment(prompt=PROMPT, image_url=http.url(f"/{i}.png"), max_new_tokens=2,
                                    timeout=60)
                results[i] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                results[i] = e.code()

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        self.assertFalse(any(t.is_alive() for t in threads))
        busy = results.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        ok = results.count(grpc.StatusCode.OK)
        print(f"\n[measure] 8 image_url requests, --max_concurrent 1 --max_queue 2: {ok} OK, {busy} busy, "
              f"{state['total']} downloads, at most {state['peak']} at once")
        self.assertEqual(ok + busy, 8, results)
        self.assertGreaterEqual(busy, 5, results)
        self.assertEqual(state["peak"], 1)
        self.assertEqual(state["total"], ok)  # no refused request downloaded anything


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def decompression_bombs(side):
    """Small valid images from the fixtures with their dimensions patched to side x side."""
    img = os.path.join(harness.FIXTURES, "image")
    out = {}
    with open(os.path.join(img, "rgb.png"), "rb") as f:
        png = bytearray(f.read())
    png[16:24] = side.to_bytes(4, "big") * 2
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")  # keep the IHDR CRC valid
    out["bomb.png"] = bytes(png)
    with open(os.path.join(img, "orient1.jpg"), "rb") as f:
        jpeg = bytearray(f.read())
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2
    out["bomb.jpg"] = bytes(jpeg)
    with open(os.path.join(img, "two_frames.gif"), "rb") as f:
        gif = bytearray(f.read())
    gif[6:10] = side.to_bytes(2, "little") * 2
    desc = gif.index(b",")
    gif[desc + 5:desc + 9] = side.to_bytes(2, "little") * 2
    out["bomb.gif"] = bytes(gif)
    with open(os.path.join(img, "palette.bmp"), "rb") as f:
        bmp = bytearray(f.read())
    bmp[18:26] = side.to_bytes(4, "little") * 2
    out["bomb.bmp"] = bytes(bmp)
    return out


class Sentinel:
    """TCP listeners on 127.0.0.1 and ::1 at one port that record every connection made to them: the
    proof that a refused URL was refused before any byte left the server."""

    def __init__(self, testcase):
        self.connections = []
        self.lock = threading.Lock()
        self.socks = []
        for _ in range(20):
            v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                v6.bind(("::1", port))
            except OSError:
                v4.close()
                v6.close()
                continue
            self.socks = [v4, v6]
            break
        if not self.socks:
            raise RuntimeError("could not bind 127.0.0.1 and ::1 on a common port")
        self.port = port
        self.stopping = False
        self.threads = []
        for s in self.socks:
            s.listen(16)
            s.settimeout(0.2)
            t = threading.Thread(target=self._accept, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)
        testcase.addCleanup(self.close)

    def _accept(self, s):
        while not self.stopping:
            try:
                c, peer = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections.append(peer)
            c.close()

    def count(self):
        with self.lock:
            return len(self.connections)

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=5)
        for s in self.socks:
            s.close()


def loopback_names_from_hosts():
    """Names in /etc/hosts (not to be modified) that the system resolver maps to a loopback address, and
    this machine's hostname when it resolves to a non-public address: names that pass the URL syntax
    check and are refused only on the resolved address."""
    names = set()
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and (fields[0].startswith("127.") or fields[0] == "::1"):
                    names.update(n for n in fields[1:] if n != "localhost")
    except OSError:
        pass
    host = socket.gethostname()
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)}
        import ipaddress
        if addrs and all(not ipaddress.ip_address(a.split("%")[0]).is_global for a in addrs):
            names.add(host)
    except (OSError, ValueError):
        pass
    return sorted(names)


# (url template, accepted codes). {p} is the sentinel's port: were the guard to let a loopback spelling
# through, the connection would land on the sentinel. PERMISSION_DENIED is the connect-time guard;
# INVALID_ARGUMENT the syntax check (userinfo) or a spelling curl itself rejects.
HOSTILE_URLS = [
    ("http://127.0.0.1:{p}/x.png", {PD}),
    ("http://127.0.0.2:{p}/x.png", {PD}),           # all of 127/8 is loopback
    ("http://[::1]:{p}/x.png", {PD}),
    ("http://[0:0:0:0:0:0:0:1]:{p}/x.png", {PD}),
    ("http://[::]:{p}/x.png", {PD}),                 # unspecified: connect() reaches local listeners
    ("http://[::ffff:127.0.0.1]:{p}/x.png", {PD}),
    ("http://[::ffff:7f00:1]:{p}/x.png", {PD}),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/x.png", {PD}),
    ("http://[64:ff9b::7f00:1]:{p}/x.png", {PD}),    # NAT64 of 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", {PD}),  # NAT64 of the metadata address
    ("http://[fe80::1]:{p}/x.png", {PD, IA}),        # link-local (curl may want a zone id)
    ("http://[fe80::1%25lo]:{p}/x.png", {PD, IA}),
    ("http://[fd00::1]:{p}/x.png", {PD}),            # unique-local
    ("http://[fc00::1]/x.png", {PD}),
    ("http://[fd00:ec2::254]/latest/meta-data/", {PD}),  # AWS metadata over IPv6
    ("http://0.0.0.0:{p}/x.png", {PD}),              # Linux connects 0.0.0.0 to local listeners
    ("http://0:{p}/x.png", {PD}),
    ("http://2130706433:{p}/x.png", {PD}),           # decimal
    ("http://0177.0.0.1:{p}/x.png", {PD}),           # octal
    ("http://0x7f000001:{p}/x.png", {PD}),           # hex
    ("http://0x7f.0.0.1:{p}/x.png", {PD}),
    ("http://127.1:{p}/x.png", {PD}),                # short forms
    ("http://127.0.1:{p}/x.png", {PD}),
    ("http://127.0.0.1.:{p}/x.png", {PD, IA}),       # trailing dot
    ("http://localhost:{p}/x.png", {PD}),
    ("http://localhost.:{p}/x.png", {PD, IA}),       # resolved by the system resolver, if it knows it
    ("http://LOCALHOST:{p}/x.png", {PD}),
    ("http://\u24dbocalhost:{p}/x.png", {PD, IA}),   # IDN: circled l maps to "localhost"
    ("http://169.254.169.254/latest/meta-data/", {PD}),  # cloud metadata
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", {PD}),
    ("http://100.100.100.200/latest/meta-data/", {PD}),  # Alibaba metadata (CGNAT)
    ("http://10.0.0.1/x.png", {PD}),
    ("http://172.16.0.1/x.png", {PD}),
    ("http://192.168.1.1/", {PD}),
    ("http://127.0.0.1:{p}#@example.com/x.png", {PD}),  # the host is what precedes '#'
    ("http://example.com@127.0.0.1:{p}/x.png", {IA}),   # userinfo: refused from the text
    ("http://example.com:80@[::1]:{p}/x.png", {IA}),
    ("http://127.0.0.1:{p}\\@example.com/x.png", {IA}),  # (as a redirect: another host, not sent)
    ("http://%6c%6f%63%61%6c%68%6f%73%74:{p}/x.png", {PD, IA}),  # percent-encoded "localhost"
]

# Whatever the first hop, curl follows a redirect to these (the syntax check sees only the first URL):
# the connect-time guard must refuse them all.
REDIRECT_ONLY = [
    ("http://example.com@127.0.0.1:{p}/x.png", {PD}),
    ("http://user:pw@[::1]:{p}/x.png", {PD}),
    ("file:///etc/passwd", {IA}),
    ("gopher://127.0.0.1:{p}/_x", {IA}),
    ("dict://127.0.0.1:{p}/x", {IA}),
]


class SsrfGuardTest(harness.ServerTestCase):
    # 127.0.0.3 stands in for a public host: it is explicitly allowed, so a redirect from it to 127.0.0.1
    # tests the check after redirects.
    server_args = ("--allowed_url_cidrs", "127.0.0.3/32")

    def setUp(self):
        self.sentinel = Sentinel(self)
        self.http = harness.file_server(self, os.path.join(harness.FIXTURES, "images"))

    def refused(self, url, codes=frozenset({PD})):
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_url=url, max_new_tokens=2, timeout=30)
        code, details = e.exception.code(), e.exception.details()
        self.assertIn(code, codes, f"{url}: {code} {details}")
        if code == PD:
            self.assertIn("non-public address", details)
            self.assertIn("--allow_private_urls", details)
        return code, details, (time.monotonic() - t0) * 1000

    def assert_nothing_reached_sentinel(self):
        self.assertEqual(self.sentinel.connections, [], "a refused URL reached the listener")

    def test_hostile_urls_refused_before_connecting(self):
        p = self.sentinel.port
        for template, codes in HOSTILE_URLS:
            url = template.format(p=p)
            with self.subTest(url=url):
                code, details, ms = self.refused(url, codes)
                print(f"\n[verdict] {url} -> {code.name} in {ms:.0f} ms: {details}", end="")
                self.assertEqual(self.sentinel.count(), 0, url)
        self.assert_nothing_reached_sentinel()

    def test_redirect_to_each_class_refused(self):
        # A hop on an allowed address (127.0.0.3) that redirects to whatever ?to= says.
        hop = redirect_to_query_server(self, "127.0.0.3")
        p = self.sentinel.port
        # After a redirect only the connect-time guard applies: PERMISSION_DENIED (or INVALID_ARGUMENT
        # where curl may reject the spelling itself). The backslash-userinfo URL names example.com as
        # its host for curl, which would need the Internet, so it is tested directly only.
        cases = [(t, {PD} | ({IA} if c == {PD, IA} else set())) for t, c in HOSTILE_URLS if "\\@" not in t]
        cases += REDIRECT_ONLY
        for template, codes in cases:
            target = template.format(p=p)
            url = hop.url("/r?to=" + quote(target))
            with self.subTest(target=target):
                code, details, _ = self.refused(url, codes)
                print(f"\n[verdict] redirect -> {target} -> {code.name}: {details}", end="")
                self.assertEqual(self.sentinel.count(), 0, target)
        # Two allowed hops, then loopback: every hop is checked, not only the first and last.
        inner = hop.url("/r?to=" + quote(f"http://127.0.0.1:{p}/x.png"))
        self.refused(hop.url("/r?to=" + quote(inner)))
        self.assertGreaterEqual(hop.hits, len(cases) + 2, "the allowed hop was not reached")
        self.assert_nothing_reached_sentinel()

    def test_name_resolving_to_loopback_refused(self):
        """DNS: the verdict is on the address curl connects to (checked in its open-socket callback, after
        resolution, for the connection actually made), so a name that resolves to loopback passes the
        syntax check and is still refused - with the guard's message, before any connection."""
        names = ["localhost", "LocalHost"] + loopback_names_from_hosts()
        print(f"\n[names] {names}")
        for name in names:
            url = f"http://{name}:{self.sentinel.port}/chelsea.png"
            with self.subTest(url=url):
                self.refused(url)
        self.assert_nothing_reached_sentinel()

    def test_allowed_range_still_works(self):
        images = harness.file_server(self, os.path.join(harness.FIXTURES, "images"), host="127.0.0.3")
        r = self.server.segment(prompt=PROMPT, image_url=images.url("/chelsea.png"), max_new_tokens=2)
        self.assertEqual((r.width, r.height), (451, 300))
        # ... and a redirect within it is followed.
        hop = redirect_to_query_server(self, "127.0.0.3")
        r = self.server.segment(prompt=PROMPT, image_url=hop.url("/r?to=" + quote(images.url("/chelsea.png"))),
                                max_new_tokens=2)
        self.assertEqual((r.width, r.height), (451, 300))

    def test_edge_limits(self):
        """The other request limits at their edges (test_segment.py covers the plain cases)."""
        image = harness.read_image()
        cases = [
            ({"image_url": "http://example.com/" + "a" * 8200}, "the limit is 8192"),
            ({"image_data": image, "prompt": "\u00e9" * 1025}, "the limit is 2048"),  # 2050 bytes
            ({"image_data": image, "max_new_tokens": -1}, "max_new_tokens must be between 1 and"),
            ({"image_data": image, "max_new_tokens": 2**31 - 1}, "max_new_tokens must be between 1 and"),
            ({"image_data": image, "model_id": "a" * 5000}, "model id 'aaaa"),  # echo capped, below
        ]
        for fields, message in cases:
            fields = {"prompt": PROMPT, **fields}
            with self.subTest(fields={k: (v if len(str(v)) < 40 else f"<{len(v)}>") for k, v in fields.items()}):
                with self.assertRaises(grpc.RpcError) as e:
                    self.server.segment(**fields)
                self.assertEqual(e.exception.code(), IA, e.exception.details())
                self.assertIn(message, e.exception.details())
                self.assertLessEqual(len(e.exception.details()), 1024)  # no amplified echo

    def test_prompt_not_utf8_does_not_hurt_the_server(self):
        # gRPC itself refuses to parse it (INTERNAL, empty message) before our code runs; the gateway
        # cannot send it (form.go refuses non-UTF-8 text with 400, protojson with 400).
        # Hand-encoded: Python's protobuf will not serialise invalid UTF-8 in a string field.
        image = harness.read_image()
        raw = b"\x0a\x04\xff\xfe\xfd\xfc" + b"\x12" + varint(len(image)) + image
        call = self.server.channel.unary_unary("/paligemma.v1.SegmentService/Segment",
                                               request_serializer=lambda b: b,
                                               response_deserializer=lambda b: b)
        with self.assertRaises(grpc.RpcError) as e:
            call(raw, timeout=30)
        print(f"\n[verdict] invalid UTF-8 prompt -> {e.exception.code().name}: {e.exception.details()}")
        self.assertIn(e.exception.code(), {IA, grpc.StatusCode.INTERNAL})
        self.assertEqual(self.server.health(), 1)  # still SERVING


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def quote(s):
    from urllib.parse import quote as q
    return q(s, safe="")


def redirect_to_query_server(testcase, host):
    """302 to the URL in ?to= (sent as is, byte for byte), counting hits."""
    from urllib.parse import parse_qs, urlsplit

    class Redirect(harness.QuietHandler):
        def do_GET(self):
            server.hits += 1
            to = parse_qs(urlsplit(self.path).query).get("to", [""])[0]
            self.send_response(302)
            self.send_header("Location", to.encode().decode("latin-1"))  # UTF-8 bytes as sent
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = harness.HttpServer(Redirect, host)
    server.hits = 0
    testcase.addCleanup(server.close)
    return server


if __name__ == "__main__":
    unittest.main()
