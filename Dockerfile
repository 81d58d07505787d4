# Builds both binaries: `tessera` (the gateway) and `subgraphs` (the demo services).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/tessera /src/target/release/subgraphs /usr/local/bin/
COPY schema.graphql tessera.toml ./
EXPOSE 4000
CMD ["tessera", "serve"]
