#!/usr/bin/python3
"""Docker HEALTHCHECK of the paligemma-serve image (installed as /usr/local/bin/pg-healthcheck).

The image runs either the gRPC server or the REST gateway; this finds which one runs in the container and
asks it: the gateway's GET /healthz, or the server's grpc.health.v1.Health/Check for the overall service
(SERVING; with --preload only once the model is loaded). The port comes from the process's --port flag, else
$PORT, else the default (8000 / 50051). Exit 0 = healthy, 1 = not.
"""
import os
import sys
import urllib.request


def find_process():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) in ("paligemma-server", "paligemma-gateway"):
            return os.path.basename(argv[0]), argv[1:]
    return None, []


def port_of(args, default):
    for i, a in enumerate(args):
        for flag in ("--port", "-port"):
            if a == flag and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
    return os.environ.get("PORT", default)


def check_gateway(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as r:
        return r.status == 200


def check_server(port):
    import grpc  # Debian's python3-grpcio

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        # HealthCheckRequest{service: ""} is the empty message; the answer is field 1 (status), SERVING = 1.
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        return check(b"", timeout=4) == b"\x08\x01"


def main():
    name, args = find_process()
    try:
        if name == "paligemma-gateway":
            ok = check_gateway(port_of(args, "8000"))
        elif name == "paligemma-server":
            ok = check_server(port_of(args, "50051"))
        else:
            print("pg-healthcheck: neither paligemma-server nor paligemma-gateway is running", file=sys.stderr)
            return 1
    except Exception as e:  # any failure to answer is "unhealthy"
        print(f"pg-healthcheck: {name}: {e}", file=sys.stderr)
        return 1
    print(f"pg-healthcheck: {name} {'healthy' if ok else 'not serving'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
