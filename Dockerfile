# Small release image: build with the Rust toolchain, run on a slim Debian base.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The workspace's other member: cargo reads its manifest, but builds only the server.
COPY bench/Cargo.toml ./bench/
COPY bench/src ./bench/src
# The release profile keeps line tables for profiling (Cargo.toml: debug = 1); the image
# leaves them out: the binary goes from about 51 MB to 7.5 MB (docs/deployment.md#docker).
RUN cargo build --release --locked --bin resound && strip target/release/resound

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 resound
COPY --from=build /src/target/release/resound /usr/local/bin/resound
USER resound
WORKDIR /app
EXPOSE 8080
ENV REVERB_SERVER_HOST=0.0.0.0 REVERB_SERVER_PORT=8080
STOPSIGNAL SIGTERM
# `resound health` asks this server's /up (over TLS when RESOUND_TLS_CERT is set) and exits
# 0 or 1: no curl in the slim image. It reads the same settings as the server.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/resound", "health"]
ENTRYPOINT ["/usr/local/bin/resound"]
