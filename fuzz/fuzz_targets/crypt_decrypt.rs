#![no_main]
//! Content decryption on arbitrary bytes: whole-object, streaming (odd read sizes, parallel or not) and
//! range decryption must never panic, must agree with each other, and anything that decrypts must
//! re-encrypt to the same bytes. A second half encrypts the input, flips one byte and checks that
//! decryption either fails or (a header-only change aside) cannot have returned other plaintext.

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use s32s3_crypt::{ChunkRange, Cipher, DecryptReader, HEADER_SIZE, Key, Nonce};

fn cipher() -> Cipher {
    Cipher::from_key(Key::from_bytes(&[0x42; 80]))
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, data)) = input.split_first() else { return };
    let cipher = cipher();

    let whole = cipher.decrypt(data);
    let mut streamed = Vec::new();
    let read_size = usize::from(control % 61) + 1;
    let mut reader = DecryptReader::new(&cipher, data).parallel(control & 0x80 != 0);
    let mut buf = vec![0u8; read_size];
    let stream_result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => streamed.extend_from_slice(&buf[..n]),
            Err(err) => break Err(err),
        }
    };
    match &whole {
        Ok(plain) => {
            assert!(stream_result.is_ok());
            assert_eq!(&streamed, plain);
            let nonce = Nonce::from_header(data).expect("decrypted, so the header is valid");
            assert_eq!(cipher.encrypt(&nonce, plain), data);
            let offset = u64::from(control) * 997;
            let range = cipher.decrypt_range(data, offset, Some(u64::from(control) * 31)).unwrap();
            let start = (offset as usize).min(plain.len());
            assert_eq!(range, &plain[start..(start + usize::from(control) * 31).min(plain.len())]);
        }
        Err(err) => {
            let io = stream_result.expect_err("whole-object decryption failed, streaming must too");
            assert_eq!(s32s3_crypt::Error::from_io(&io), Some(err));
        }
    }
    if let Ok(nonce) = Nonce::from_header(data) {
        let range = ChunkRange::new(u64::from(control) * 4099, None);
        let from = (range.underlying_offset as usize).min(data.len()).max(HEADER_SIZE);
        let mut out = Vec::new();
        let _ = DecryptReader::for_range(&cipher, nonce, &range, &data[from..]).read_to_end(&mut out);
    }

    // Tamper with a real object: one flipped byte in the body must make decryption fail.
    let nonce = Nonce::from_bytes([control; 24]);
    let mut sealed = cipher.encrypt(&nonce, data);
    if sealed.len() > HEADER_SIZE {
        let at = HEADER_SIZE + usize::from(control) * 263 % (sealed.len() - HEADER_SIZE);
        sealed[at] ^= 1 | control;
        assert!(cipher.decrypt(&sealed).is_err());
    }
});
