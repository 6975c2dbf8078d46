# paligemma-serve: one image holding the gRPC server, the REST gateway and the exporter.
#
#   docker build --network host -t paligemma-serve .          # or: docker compose build
#   docker run --rm -p 50051:50051 paligemma-serve               # server (default command)
#   docker run --rm -p 8000:8000 paligemma-serve paligemma-gateway --grpc_endpoint HOST:50051
#
# Stages: `build` installs the dependencies with scripts/install-deps.sh (the script CI runs) and builds every
# target (tests off); `runtime` (the default, last stage) is bookworm-slim with only runtime libraries, the
# binaries, the exporter (Debian's python3-torch, to export a Hugging Face checkpoint on first use) and a
# Python client. It runs as the non-root user `paligemma` (uid 1000) under tini.
#
# Architectures: nothing here is amd64-specific; Debian ships every package on amd64 and arm64, and the Go
# toolchain is chosen by TARGETARCH (set by BuildKit/buildx; the classic builder falls back to dpkg's
# architecture). `docker buildx build --platform linux/amd64,linux/arm64 .` builds both.
#
# CUDA: Debian 12 has no CUDA build of LibTorch, so by default this image computes on CPU. The build argument
# LIBTORCH_URL=<a cxx11-ABI CUDA LibTorch zip from pytorch.org> links the server against that LibTorch instead
# (the zip bundles the CUDA runtime, cuBLAS and cuDNN; the driver comes from the NVIDIA container toolkit) so
# that it runs with DEVICE=cuda (compose.yaml's `gpu` profile). It is NOT built or tested in CI (no GPU, and
# no network there besides the Debian mirror and the Go module proxy): treat it as a starting point. The
# exporter stays Debian's CPU torch 1.13 either way (export runs once per model).
#
# No image can be pulled on the machines this is tested on: scripts/make-base-image.sh builds debian:bookworm
# and debian:bookworm-slim with debootstrap. Elsewhere they are Docker Hub's official images.
ARG BASE_IMAGE=debian:bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
ARG TARGETARCH
# Where install-deps.sh gets Go (golang.org/toolchain) and the gateway its modules.
ARG GOPROXY=https://proxy.golang.org,direct
# Extra CA certificates (PEM) to trust, for networks that intercept TLS (a corporate or sandbox proxy in front
# of the Go module proxy or huggingface.co): --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)"
ARG EXTRA_CA_CERTS=""
ENV DEBIAN_FRONTEND=noninteractive GOPROXY=${GOPROXY} PATH=/usr/local/go/bin:${PATH}
WORKDIR /src
RUN if [ -n "${EXTRA_CA_CERTS}" ]; then mkdir -p /usr/local/share/ca-certificates \
      && printf '%s\n' "${EXTRA_CA_CERTS}" >/usr/local/share/ca-certificates/extra-ca-certs.crt; fi
# Layer order = rebuild cost: dependencies change least, then the gateway's Go modules, then the sources.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN PG_DEPS=build bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY gateway/go.mod gateway/go.sum gateway/
# Downloads the modules and compiles the protoc plugins and gRPC once, into the image's Go caches (which the
# CMake build uses: it asks `go env GOCACHE GOMODCACHE`).
RUN cd gateway && GOFLAGS=-mod=readonly go build -o /tmp/go-tools/ \
      google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc \
      github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
      github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 \
      google.golang.org/grpc github.com/grpc-ecosystem/grpc-gateway/v2/runtime \
    && rm -rf /tmp/go-tools
ARG LIBTORCH_URL=""
RUN mkdir -p /opt/libtorch/lib \
    && if [ -n "${LIBTORCH_URL}" ]; then \
         curl -fsSL -o /tmp/libtorch.zip "${LIBTORCH_URL}" && unzip -q /tmp/libtorch.zip -d /opt \
         && rm /tmp/libtorch.zip; \
       fi
COPY . .
ARG CMAKE_ARGS=""
RUN if [ -n "${LIBTORCH_URL}" ]; then set -- -DPG_CUDA=ON -DPG_TORCH_PREFIX=/opt/libtorch; fi \
    && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF "$@" ${CMAKE_ARGS} \
    && cmake --build build -j"$(nproc)" \
    && strip build/paligemma-server build/paligemma-segment

# ---------------------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
ARG EXTRA_CA_CERTS=""
ENV DEBIAN_FRONTEND=noninteractive
RUN if [ -n "${EXTRA_CA_CERTS}" ]; then mkdir -p /usr/local/share/ca-certificates \
      && printf '%s\n' "${EXTRA_CA_CERTS}" >/usr/local/share/ca-certificates/extra-ca-certs.crt; fi
# Runtime libraries only: the server's (LibTorch, gRPC, protobuf, abseil, libcurl, OpenBLAS), the
# exporter's (python3-torch, numpy), the healthcheck's and client's (python3-grpcio, python3-protobuf, PIL).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini ca-certificates \
       libtorch1.13 libopenblas0-pthread libgrpc++1.51 libprotobuf32 libabsl20220623 libcurl4 \
       python3 python3-torch python3-numpy python3-grpcio python3-protobuf python3-pil \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && useradd --uid 1000 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin paligemma \
    && mkdir -p /app/models/bundles /app/models/huggingface \
    && chown -R paligemma:paligemma /app
COPY --from=build /src/build/paligemma-server /src/build/paligemma-gateway /src/build/paligemma-segment \
     /usr/local/bin/
# Empty unless built with LIBTORCH_URL (CUDA).
COPY --from=build /opt/libtorch/lib /opt/libtorch/lib
COPY --from=build /src/exporter /app/exporter
COPY --from=build /src/build/python /app/python
COPY client /app/client
COPY scripts/healthcheck.py /usr/local/bin/pg-healthcheck
RUN ln -s /app/client/paligemma-client /usr/local/bin/paligemma-client \
    && find /app/exporter /app/client -name __pycache__ -prune -exec rm -rf {} +

ENV MODEL_ID=google/paligemma2-3b-mix-448 \
    MODELS_DIR=/app/models \
    PG_EXPORTER_DIR=/app \
    PG_PYTHON=/usr/bin/python3 \
    PG_PROTO_PYTHON=/app/python \
    LD_LIBRARY_PATH=/opt/libtorch/lib \
    PYTHONDONTWRITEBYTECODE=1
USER paligemma
WORKDIR /app
EXPOSE 8000 50051
# Healthy = the gateway's /healthz answers, or the server's grpc.health.v1 says SERVING (with --preload:
# once the model is loaded). pg-healthcheck looks at which of the two this container runs.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["pg-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["paligemma-server"]

