//! Benchmarks for s32s3: criterion micro-benchmarks under `benches/`, and the end-to-end comparison scripts
//! against rclone next to them. This library is empty on purpose; it only anchors the package.
