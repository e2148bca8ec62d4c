# syntax=docker/dockerfile:1
# tensor-wasm: the gateway, the TensorCast Store Daemon and the Global Store
# in one image (they are one wheel). Build:
#
#   docker build -t tensor-wasm:0.1.0 --build-arg TENSOR_WASM_GIT_SHA=$(git rev-parse --short=12 HEAD) .
#
# Stage 1 compiles the wheel (Rust core + Python package, abi3); stage 2 is a
# slim Python with only that wheel installed, running as an unprivileged user.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

FROM python:${PYTHON_VERSION}-${DEBIAN_RELEASE} AS builder
# Cargo.toml's rust-version.
ARG RUST_VERSION=1.95.0
# build.rs reads it for tensor_wasm_build_info (there is no .git in the context).
ARG TENSOR_WASM_GIT_SHA=unknown
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH \
    TENSOR_WASM_GIT_SHA=${TENSOR_WASM_GIT_SHA}
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION} \
 && rustc --version
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md LICENSE ./
COPY rust/ rust/
COPY python/ python/
# pip runs the maturin build backend (pyproject.toml) in release mode.
RUN --mount=type=cache,target=/opt/cargo/registry \
    --mount=type=cache,target=/src/target \
    python -m pip wheel --no-deps --wheel-dir /dist . \
 && ls -l /dist

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
ARG UID=10001
# The same uid in every container that shares the Store Daemon's fd socket
# (it is mode 0600): the Helm chart and deploy/k8s use 10001.
RUN groupadd --system --gid ${UID} tensorwasm \
 && useradd --system --uid ${UID} --gid ${UID} --home-dir /var/lib/tensor-wasm \
      --no-create-home --shell /usr/sbin/nologin tensorwasm \
 && install -d -o ${UID} -g ${UID} -m 0750 /var/lib/tensor-wasm /var/lib/tensorcast \
 && install -d -o ${UID} -g ${UID} -m 0700 /run/tensorcast
COPY --from=builder /dist/ /tmp/dist/
RUN python -m pip install --no-cache-dir /tmp/dist/*.whl \
 && rm -rf /tmp/dist \
 && tensor-wasm --version
ENV TENSOR_WASM_HOME=/var/lib/tensor-wasm \
    TENSORCAST_HOME=/var/lib/tensorcast \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER ${UID}:${UID}
WORKDIR /var/lib/tensor-wasm
VOLUME ["/var/lib/tensor-wasm"]
EXPOSE 8080
# slim has no curl: probe /healthz with the interpreter the image already has.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
# Other commands of the image: tensorcast-cli daemon start ..., tensorcast-cli
# global start ... (docker-compose.yml).
ENTRYPOINT ["tensor-wasm"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
