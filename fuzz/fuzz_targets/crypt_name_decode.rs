#![no_main]
//! Name decoding on arbitrary text in every mode and encoding: never a panic, and whatever decodes
//! must encrypt and decrypt back to the same plaintext.

use libfuzzer_sys::fuzz_target;
use s32s3_crypt::{Cipher, Key, NameEncoding, NameMode, NameOptions};

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let mode = match control % 4 {
        0 | 1 => NameMode::Standard,
        2 => NameMode::Obfuscate,
        _ => NameMode::off(".bin"),
    };
    let encoding = match (control / 4) % 3 {
        0 => NameEncoding::Base32,
        1 => NameEncoding::Base64,
        _ => NameEncoding::Base32768,
    };
    let options = NameOptions { mode, encoding, directory_name_encryption: control & 0x80 == 0 };
    let codec = Cipher::from_key(Key::from_bytes(&[control; 80])).name_codec(options);
    for is_dir in [false, true] {
        let decoded = if is_dir { codec.decrypt_dir_path(text) } else { codec.decrypt_path(text) };
        if let Ok(plain) = decoded {
            let again = if is_dir { codec.encrypt_dir_path(&plain) } else { codec.encrypt_path(&plain) };
            // A decoded segment is at most 2047 bytes, so it always encrypts again.
            let again = again.expect("a decoded name encrypts");
            let back = if is_dir { codec.decrypt_dir_path(&again) } else { codec.decrypt_path(&again) };
            assert_eq!(back.expect("an encrypted name decrypts"), plain);
        }
    }
    let _ = codec.decrypt_segment(text);
});
