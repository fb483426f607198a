#![no_main]
//! madmin payload decryption: arbitrary bytes never panic, and a sealed payload opens to its plaintext
//! while any single altered byte makes it fail (never a different plaintext).

use libfuzzer_sys::fuzz_target;
use s32s3_minio_admin::Error;
use s32s3_minio_admin::payload::{self, fuzzing};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let chacha = selector & 1 == 1;

    // Arbitrary bytes as a payload: only payload errors, no panic.
    match fuzzing::open(chacha, rest) {
        Ok(_)
        | Err(
            Error::PayloadTruncated { .. } | Error::PayloadTampered { .. } | Error::PayloadWrongSecret,
        ) => {}
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }

    // The real entry point, with the fast PBKDF2 id only (Argon2id would make each run take 64 MiB).
    if rest.len() > 32 && rest[32] == 0x02 {
        let _ = payload::decrypt("fuzz-secret", rest);
    }

    // Round trip, then one altered byte.
    let sealed = fuzzing::seal(chacha, [selector; 8], rest).expect("seal");
    assert_eq!(sealed.len(), payload::encrypted_len(rest.len()));
    assert_eq!(fuzzing::open(chacha, &sealed).expect("open what was sealed"), rest);
    let position = 41 + usize::from(selector) * 97 % (sealed.len() - 41);
    let mut altered = sealed;
    altered[position] ^= 1 << (selector % 8);
    assert!(fuzzing::open(chacha, &altered).is_err(), "an altered byte at {position} went unnoticed");
});
