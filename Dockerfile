# darkroom: multi-stage build, small non-root runtime image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/darkroom

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data darkroom \
    && mkdir /data && chown darkroom /data
COPY --from=build /src/target/release/darkroom /usr/local/bin/darkroom
USER darkroom
VOLUME ["/data"]
ENV DARKROOM_DATA_DIR=/data \
    DARKROOM_S3__ADDR=0.0.0.0:9000 \
    DARKROOM_API__ADDR=0.0.0.0:9080
EXPOSE 9000 9080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD curl -fsS http://127.0.0.1:9080/healthz || exit 1
ENTRYPOINT ["darkroom", "serve", "--log-format", "json"]
