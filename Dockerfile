# Two stages: build with the Rust toolchain, run on a slim Debian with CA certificates
# (rustls verifies DBS and chat endpoints against them).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/dbswatch /usr/local/bin/dbswatch
WORKDIR /var/lib/dbswatch
ENTRYPOINT ["dbswatch"]
CMD ["run"]
