//! Throughput of the crypt content cipher (one core and all cores) and of name encryption.
//!
//! `cargo bench -p s32s3-benches --bench crypt` (add `-- --quick` for a short run). "one core" runs on the
//! calling thread; "all cores" spreads the chunks over rayon's pool (one thread per core).

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use s32s3_crypt::{Cipher, Key, NameEncoding, NameMode, NameOptions, Nonce};

/// 16 MiB: big enough for the parallel runs to use every core, small enough to stay in memory bandwidth.
const SIZE: usize = 16 << 20;

fn cipher() -> Cipher {
    // Fixed key bytes: the benchmark measures the cipher, not scrypt.
    Cipher::from_key(Key::from_bytes(&[0x5a; 80]))
}

fn content(c: &mut Criterion) {
    let cipher = cipher();
    let nonce = Nonce::from_bytes([7; 24]);
    let plain: Vec<u8> = (0..SIZE).map(|i| (i * 31 + 7) as u8).collect();
    let sealed = {
        let mut out = Vec::new();
        cipher.encrypt_chunks(&nonce, 0, &plain, &mut out);
        out
    };
    let mut group = c.benchmark_group("content");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(20);
    let mut out = Vec::with_capacity(sealed.len());
    group.bench_function("encrypt/one-core", |b| {
        b.iter(|| {
            out.clear();
            cipher.encrypt_chunks(&nonce, 0, black_box(&plain), &mut out);
        });
    });
    group.bench_function("encrypt/all-cores", |b| {
        b.iter(|| {
            out.clear();
            cipher.encrypt_chunks_parallel(&nonce, 0, black_box(&plain), &mut out);
        });
    });
    group.bench_function("decrypt/one-core", |b| {
        b.iter(|| {
            out.clear();
            cipher.decrypt_chunks(&nonce, 0, black_box(&sealed), &mut out).unwrap();
        });
    });
    group.bench_function("decrypt/all-cores", |b| {
        b.iter(|| {
            out.clear();
            cipher.decrypt_chunks_parallel(&nonce, 0, black_box(&sealed), &mut out).unwrap();
        });
    });
    group.finish();
}

fn names(c: &mut Criterion) {
    let cipher = cipher();
    let mut group = c.benchmark_group("names");
    let name = "photos/2024/holiday in the mountains/IMG_20240817_101112.jpg";
    group.throughput(Throughput::Elements(1));
    for (label, mode, encoding) in [
        ("standard-base32", NameMode::Standard, NameEncoding::Base32),
        ("standard-base64", NameMode::Standard, NameEncoding::Base64),
        ("standard-base32768", NameMode::Standard, NameEncoding::Base32768),
        ("obfuscate", NameMode::Obfuscate, NameEncoding::Base32),
    ] {
        let codec = cipher.name_codec(NameOptions { mode, encoding, directory_name_encryption: true });
        let encrypted = codec.encrypt_path(name).unwrap();
        group.bench_with_input(BenchmarkId::new("encrypt_path", label), name, |b, name| {
            b.iter(|| codec.encrypt_path(black_box(name)).unwrap());
        });
        group.bench_with_input(BenchmarkId::new("decrypt_path", label), &encrypted, |b, enc| {
            b.iter(|| codec.decrypt_path(black_box(enc)).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, content, names);
criterion_main!(benches);
