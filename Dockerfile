# syntax=docker/dockerfile:1
# The s32s3 image: one static (musl) binary on distroless/static, which brings CA certificates, tzdata and the
# non-root user 65532, and nothing else (no shell, no libc). The Helm chart in chart/ runs it.
#
#   docker build -t ctr.0x.pt/ops/s32s3:0.1.0 .
#
# On an arm64 builder: --build-arg TARGET=aarch64-unknown-linux-musl (the build is native, not a cross-compile).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# A C toolchain for the crates that compile C: aws-lc-sys (rustls' crypto provider) and ring. For x86_64 and
# aarch64 musl, aws-lc-rs >= 1.7 needs only a C/C++ compiler (CMake, Go and bindgen only for its FIPS build).
# linux-headers brings <linux/random.h>: without it aws-lc builds but draws entropy from getentropy(2) alone,
# which aborts on kernels older than 3.17 instead of falling back to /dev/urandom.
# Alpine keeps only the current version of a package in its index, so pinning one would break the build later.
# hadolint ignore=DL3018
RUN apk add --no-cache build-base linux-headers
ARG TARGET=x86_64-unknown-linux-musl
# A no-op when TARGET is the builder's own (musl) target, as it is on Alpine.
RUN rustup target add "${TARGET}"
WORKDIR /src
COPY . .
# Symbol names stay (readable backtraces); the line tables of the release profile go (a smaller binary).
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${TARGET}" -p s32s3-cli --bin s32s3 \
    && install -m 0755 "target/${TARGET}/release/s32s3" /usr/local/bin/s32s3

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="s32s3" \
      org.opencontainers.image.description="Back up S3-compatible object stores into rclone-crypt encrypted backups, and restore them" \
      org.opencontainers.image.source="https://github.com/s32s3/s32s3" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /usr/local/bin/s32s3 /usr/local/bin/s32s3
ENV PATH=/usr/local/bin:/usr/bin:/bin
# The binary must run on an image without libc: this fails the build if it is not static.
RUN ["s32s3", "--version"]
USER 65532:65532
ENTRYPOINT ["s32s3"]
