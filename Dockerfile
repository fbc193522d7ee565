# Build: docker build -t mediagate .
# Run:   docker run -p 8080:8080 -e MEDIAGATE__SERVER__LISTEN=0.0.0.0:8080 ... mediagate
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin mediagate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/mediagate --create-home mediagate
COPY --from=build /src/target/release/mediagate /usr/local/bin/mediagate
USER mediagate
WORKDIR /var/lib/mediagate
ENV MEDIAGATE__SERVER__LISTEN=0.0.0.0:8080 \
    MEDIAGATE__DATABASE__URL=sqlite:///var/lib/mediagate/data/mediagate.db
EXPOSE 8080
ENTRYPOINT ["mediagate"]
CMD ["serve"]
