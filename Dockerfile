# syntax=docker/dockerfile:1
# A small, static, non-root image of chmigrate (CLI and operator).
# No container engine runs on the project's build machines, so CI does not
# build this file; build it with `docker build -t chmigrate .`.

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# On Alpine the host target is musl: the binary is statically linked.
RUN cargo build --release --locked --bin chmigrate \
 && strip target/release/chmigrate

# distroless/static: CA certificates and /etc/passwd, no shell, no package
# manager. UID 65532 is its "nonroot" user (the chart runs as it too).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/chmigrate /usr/local/bin/chmigrate
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/chmigrate"]
CMD ["operator"]
