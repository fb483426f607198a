#![no_main]
//! What a backup does with a previous snapshot and a checkpoint read from a tampered destination: both are
//! read (the input is split in two at its first byte's position, each half a JSON Lines manifest the
//! harness compresses and encrypts), merged (the checkpoint's entries win) and split by bucket into spool
//! files, as the next run's merge-join reads them. Nothing may panic; an accepted merge is in order, and
//! the split reads back as it was merged.

use std::io::Cursor;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use s32s3_core::Result;
use s32s3_core::format::manifest::{EntryLine, ManifestReader};
use s32s3_core::engine::plan::{MergeNewest, PreviousEntries};
use s32s3_crypt::{Cipher, Key, Nonce};

fn cipher() -> Cipher {
    Cipher::from_key(Key::from_bytes(&[0x42; 80]))
}

fn work_dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory")).path()
}

fn reader(plain: &[u8]) -> Option<ManifestReader> {
    let cipher = cipher();
    let compressed = zstd::bulk::compress(plain, 1).ok()?;
    let sealed = cipher.encrypt(&Nonce::from_bytes([9; 24]), &compressed);
    ManifestReader::from_reader("fuzz", Cursor::new(sealed), &cipher).ok()
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, data)) = input.split_first() else { return };
    let cut = (usize::from(cut) * data.len() / 255).min(data.len());
    let (parent, checkpoint) = data.split_at(cut);
    let (Some(parent), Some(checkpoint)) = (reader(parent), reader(checkpoint)) else { return };
    let older: Box<dyn Iterator<Item = Result<EntryLine>>> = Box::new(parent.lines().take(5_000));
    let newer: Box<dyn Iterator<Item = Result<EntryLine>>> = Box::new(checkpoint.lines().take(5_000));
    let Ok(mut split) = PreviousEntries::split(MergeNewest::new(older, newer), work_dir()) else { return };
    let buckets: Vec<String> = split.bucket_names().map(str::to_owned).collect();
    for bucket in buckets {
        let mut last: Option<String> = None;
        for entry in split.lines(&bucket).expect("spools read back") {
            let entry = entry.expect("what was spooled reads back");
            assert_eq!(entry.bucket, bucket);
            assert!(last.as_ref().is_none_or(|l| *l < entry.key), "merged entries stay in key order");
            last = Some(entry.key);
        }
    }
});
