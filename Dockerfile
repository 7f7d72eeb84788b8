# syntax=docker/dockerfile:1
# The gateway image: the release binary, the bundled plugins and plugins.toml on a slim Debian,
# run as a non-root user, listening on 0.0.0.0:8080, state under the /data volume.
#   docker build -t gateway .                 (or: podman build --format docker -t gateway .)
#   docker run -p 8080:8080 -v gateway-data:/data -e GATEWAY_JWT_SECRET=... gateway
# The bases are build arguments so a machine without a registry can use local images
# (scripts/container-bases makes them from a Debian rootfs and the host's Rust toolchain).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS builder
# rust images come with rustup; the local builder base already has the target.
RUN if command -v rustup >/dev/null; then rustup target add wasm32-wasip2; fi
WORKDIR /src
COPY . .
# The target dir and the crate downloads are cache mounts, so a rebuild after a source change
# recompiles only what changed (container/stable-mtimes makes cargo see changes by content, not
# by the context's mtimes). Outputs are copied out of the cache mount into /out; the binary
# loses its line tables (about 150 MB of the release profile's debuginfo), backtraces keep names.
ENV CARGO_TARGET_DIR=/cache/target
RUN --mount=type=cache,id=gateway-target,target=/cache/target,sharing=locked \
    --mount=type=cache,id=gateway-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    set -eu; \
    container/stable-mtimes prepare /src /cache/target/.src.sha256; \
    cargo build --release --locked -p gateway; \
    scripts/build-plugins; \
    container/stable-mtimes save /src /cache/target/.src.sha256; \
    mkdir -p /out/bin /out/app/dist/plugins; \
    cp "$CARGO_TARGET_DIR/release/gateway" /out/bin/gateway; \
    strip --strip-debug /out/bin/gateway; \
    cp plugins.toml /out/app/plugins.toml; \
    for w in $(grep -o 'dist/plugins/[A-Za-z0-9_.-]*\.wasm' plugins.toml | sort -u); do cp "$w" "/out/app/$w"; done; \
    if [ -d demo/dist ]; then mkdir -p /out/app/demo && cp -r demo/dist /out/app/demo/dist; fi

FROM ${RUNTIME_IMAGE}
# plugins.toml's relative paths resolve against /app: data/ (stream log, fs storage) and the
# plugin compile cache are links into /data, so the shipped config is used unchanged.
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin gateway \
 && mkdir -p /app /data/cache \
 && chown -R gateway:gateway /data \
 && ln -s /data /app/data \
 && ln -s /data/cache /app/.gateway-cache
# For S3 and GCS over HTTPS (the gateway reads the system's roots); slim bases have none.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY container/healthcheck /usr/local/bin/gateway-healthcheck
COPY --from=builder /out/bin/gateway /usr/local/bin/gateway
COPY --from=builder /out/app/ /app/
WORKDIR /app
ENV GATEWAY_CONFIG=/app/plugins.toml \
    GATEWAY_LISTEN=0.0.0.0:8080
VOLUME /data
EXPOSE 8080
USER gateway
# Probes the address in GATEWAY_LISTEN (set that rather than --listen to move the port).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["gateway-healthcheck"]
ENTRYPOINT ["gateway"]
CMD ["serve"]
