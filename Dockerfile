# eva-hub container image: build in a full Rust image, run in a slim one
# as an unprivileged user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked --bin eva-hub || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin eva-hub

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/eva-hub --create-home eva \
    && install -d -o eva -g eva /var/lib/eva-hub/data
COPY --from=build /src/target/release/eva-hub /usr/local/bin/eva-hub
USER eva
WORKDIR /var/lib/eva-hub
# The embedded SQLite file lives in ./data (owned by eva, so a fresh volume
# is writable); mount a volume here to keep it, or set DATABASE_URL to a
# PostgreSQL server.
VOLUME ["/var/lib/eva-hub/data"]
EXPOSE 8080 9090
ENTRYPOINT ["eva-hub"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9090"]
