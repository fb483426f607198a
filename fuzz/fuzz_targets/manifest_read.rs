#![no_main]
//! The manifest reader on a tampered destination's bytes. The first input byte picks what the rest is:
//! 0 the encrypted object as stored (an attacker without the key), 1 a zstd stream the harness encrypts
//! (someone with the key, or a bug, wrote it), 2 JSON Lines the harness compresses and encrypts (to reach
//! the header and entry checks quickly). Reading must never panic; what it accepts must be a well-formed,
//! strictly ordered manifest, and the name check must accept it only under its own name.

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use s32s3_core::format::layout::Layout;
use s32s3_core::format::manifest::ManifestReader;
use s32s3_core::format::snapshots::{SnapshotRef, check_binding, to_millis};
use s32s3_crypt::{Cipher, Key, Nonce};

fn cipher() -> Cipher {
    Cipher::from_key(Key::from_bytes(&[0x42; 80]))
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else { return };
    let cipher = cipher();
    let stored = match mode % 3 {
        0 => data.to_vec(),
        1 => cipher.encrypt(&Nonce::from_bytes([7; 24]), data),
        _ => {
            let compressed = zstd::bulk::compress(data, 1).expect("compressing in memory works");
            cipher.encrypt(&Nonce::from_bytes([7; 24]), &compressed)
        }
    };
    let Ok(mut reader) = ManifestReader::from_reader("fuzz.snap", Cursor::new(stored), &cipher) else { return };
    let header = reader.header().clone();
    let mut last: Option<(String, String)> = None;
    for _ in 0..10_000 {
        match reader.next_entry() {
            Ok(Some(entry)) => {
                let this = (entry.bucket.clone(), entry.key.clone());
                assert!(last.as_ref().is_none_or(|l| *l < this), "the reader enforces strict (bucket, key) order");
                last = Some(this);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Bound to its name: only the id, finish time and location in its header pass.
    let layout = Layout::new(&cipher, "").expect("an empty prefix is valid");
    if let Ok(finished) =
        time::OffsetDateTime::parse(&header.finished, &time::format_description::well_known::Rfc3339)
    {
        let own = SnapshotRef {
            key: "k".into(),
            id: header.snapshot_id.clone(),
            finished: to_millis(finished),
            checkpoint: header.status == s32s3_core::format::manifest::SnapshotStatus::Running,
            size: 1,
        };
        let bound = check_binding(&header, &own, "backups", &layout);
        let location_ok = header.location.as_ref().is_none_or(|l| l.bucket == "backups" && l.prefix.is_empty());
        assert_eq!(bound.is_ok(), location_ok, "{bound:?}");
        let renamed = SnapshotRef { id: format!("{}x", header.snapshot_id), ..own.clone() };
        assert!(check_binding(&header, &renamed, "backups", &layout).is_err());
        let later = SnapshotRef { finished: own.finished + time::Duration::milliseconds(1), checkpoint: false, ..own };
        assert!(check_binding(&header, &later, "backups", &layout).is_err());
    }
});
