#!/usr/bin/env bash
# Stage "delivery-lint": the delivery files are valid: shellcheck (scripts), clang-format (C++ style),
# yamllint (compose, workflows, Kubernetes), `docker-compose config` (compose.yaml alone, with
# compose.tiny.yaml, with the gpu profile), the workflows' and manifests' structure, and the Python
# client/healthcheck compile.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "delivery-lint: $*" >&2; exit 1; }

shellcheck scripts/install-deps.sh scripts/test.sh scripts/demo.sh scripts/make-base-image.sh \
  scripts/test-stages/40-delivery-lint.sh scripts/test-stages/50-client.sh scripts/test-stages/60-demo.sh \
  scripts/test-stages/90-docker.sh .ci/run
echo "delivery-lint: shellcheck ok"
# The C++ follows .clang-format (clang-format 14, Debian 12's).
git ls-files -z '*.cc' '*.h' | xargs -0 clang-format-14 --dry-run --Werror
echo "delivery-lint: clang-format ok ($(git ls-files '*.cc' '*.h' | wc -l) files)"

yamllint -c .yamllint.yaml compose.yaml compose.tiny.yaml .github/workflows deploy/kubernetes .yamllint.yaml
echo "delivery-lint: yamllint ok"

if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
# config interpolates ${HOME}; it does not need the token file or the image to exist.
"${compose[@]}" -f compose.yaml config -q
"${compose[@]}" -f compose.yaml -f compose.tiny.yaml config -q
"${compose[@]}" -f compose.yaml --profile gpu config -q
services="$("${compose[@]}" -f compose.yaml --profile gpu config --services | sort | tr '\n' ' ')"
[ "$services" = "gateway gateway-gpu server server-gpu " ] || fail "unexpected services: $services"
echo "delivery-lint: ${compose[*]} config ok ($services)"

/usr/bin/python3 - <<'PY'
import yaml

def load(path):
    with open(path) as f:
        return list(yaml.safe_load_all(f))

for wf in (".github/workflows/ci.yml", ".github/workflows/docker.yml"):
    doc = load(wf)[0]
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads the key `on` as true
    assert on is not None and "push" in on, (wf, "triggers")
    for name, job in doc["jobs"].items():
        assert job.get("runs-on") and job.get("steps"), (wf, name)
ci = load(".github/workflows/ci.yml")[0]["jobs"]
assert ci["test"]["container"] == "debian:bookworm"
assert any("bash .ci/run" == s.get("run") for s in ci["test"]["steps"]), "ci.yml runs .ci/run"
docker = load(".github/workflows/docker.yml")[0]
assert docker["on"if "on" in docker else True]["push"]["branches"] == ["main"]
steps = docker["jobs"]["image"]["steps"]
uses = [s.get("uses", "").split("@")[0] for s in steps]
for action in ("docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action", "docker/build-push-action"):
    assert action in uses, action
build = steps[uses.index("docker/build-push-action")]["with"]
assert "linux/arm64" in build["platforms"] and "github.sha" in build["tags"] and ":latest" in build["tags"]

kinds = {}
for d in load("deploy/kubernetes/paligemma.yaml"):
    kinds.setdefault(d["kind"], []).append(d)
assert len(kinds["Deployment"]) == 2 and len(kinds["Service"]) == 2, kinds.keys()
server, gateway = kinds["Deployment"]
sc = server["spec"]["template"]["spec"]["containers"][0]
gc = gateway["spec"]["template"]["spec"]["containers"][0]
assert sc["readinessProbe"]["grpc"]["port"] == 50051 and sc["livenessProbe"]["grpc"]["port"] == 50051
assert gc["livenessProbe"]["httpGet"]["path"] == "/healthz" and gc["readinessProbe"]["httpGet"]["path"] == "/readyz"
assert [s for s in kinds["Service"] if s["spec"].get("clusterIP") == "None"], "a headless server Service"
print("delivery-lint: workflows and Kubernetes manifests ok")
PY

/usr/bin/python3 -c 'import sys; [compile(open(f).read(), f, "exec") for f in sys.argv[1:]]' \
  client/paligemma_client.py client/paligemma-client scripts/healthcheck.py
PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 client/paligemma-client --help >/dev/null
echo "delivery-lint: python ok"
