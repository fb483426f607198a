//! Property tests: round trips at every length around the chunk size, parallel and chunk-range
//! encryption equal to sequential, range decryption equal to slicing, name codecs, no panics.

use std::io::Read;

use proptest::prelude::*;
use s32s3_crypt::{
    CHUNK_SIZE, ChunkRange, Cipher, DecryptReader, ENCRYPTED_CHUNK_SIZE, EncryptReader, HEADER_SIZE, Key,
    NameEncoding, NameMode, NameOptions, Nonce, decrypted_size, encrypted_size,
};
use xsalsa20poly1305::aead::AeadInPlace;
use xsalsa20poly1305::{KeyInit, XSalsa20Poly1305};

fn cipher(seed: u8) -> Cipher {
    Cipher::from_key(Key::from_bytes(&std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))))
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed)).collect()
}

/// Lengths within ±40 bytes of 0..=3 chunk boundaries, and anything up to 3 chunks.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        (0usize..=3, 0usize..=80).prop_map(|(k, d)| (k * CHUNK_SIZE + d).saturating_sub(40)),
        0usize..3 * CHUNK_SIZE + 100,
    ]
}

/// Reads `reader` to the end with reads of the given sizes (cycled).
fn read_in_pieces(mut reader: impl Read, sizes: &[usize]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; CHUNK_SIZE * 2];
    for i in 0.. {
        let want = sizes[i % sizes.len()].clamp(1, buf.len());
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
    unreachable!()
}

/// A reader that hands out at most `max` bytes per call, to exercise partial reads.
struct Trickle<'a> {
    data: &'a [u8],
    max: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.max);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_around_chunk_boundaries(
        len in length(),
        seed in any::<u8>(),
        nonce in any::<[u8; 24]>(),
        reads in proptest::collection::vec(1usize..100_000, 1..4),
        trickle in 1usize..70_000,
        parallel in any::<bool>(),
    ) {
        let cipher = cipher(seed);
        let nonce = Nonce::from_bytes(nonce);
        let plain = data(len, seed);
        let enc = cipher.encrypt(&nonce, &plain);
        prop_assert_eq!(enc.len() as u64, encrypted_size(len as u64));
        prop_assert_eq!(decrypted_size(enc.len() as u64).unwrap(), len as u64);
        prop_assert_eq!(&cipher.decrypt(&enc).unwrap(), &plain);

        let streamed = read_in_pieces(
            EncryptReader::with_nonce(&cipher, nonce, Trickle { data: &plain, max: trickle }).parallel(parallel),
            &reads,
        ).unwrap();
        prop_assert_eq!(&streamed, &enc);
        let back = read_in_pieces(
            DecryptReader::new(&cipher, Trickle { data: &enc, max: trickle }).parallel(parallel).expect_size(len as u64),
            &reads,
        ).unwrap();
        prop_assert_eq!(&back, &plain);
    }

    /// Every chunk is exactly the reference secretbox (xsalsa20poly1305) under nonce + index.
    #[test]
    fn chunks_equal_the_reference_secretbox(len in length(), seed in any::<u8>(), nonce in any::<[u8; 24]>(), first in any::<u64>()) {
        let cipher = cipher(seed);
        let nonce = Nonce::from_bytes(nonce);
        let plain = data(len, seed);
        let mut ours = Vec::new();
        cipher.encrypt_chunks(&nonce, first, &plain, &mut ours);
        let reference = XSalsa20Poly1305::new(cipher.key().data_key().into());
        let mut expected = Vec::new();
        for (i, chunk) in plain.chunks(CHUNK_SIZE).enumerate() {
            let mut body = chunk.to_vec();
            let n = nonce.add(first.wrapping_add(i as u64));
            let tag = reference.encrypt_in_place_detached(n.as_bytes().into(), &[], &mut body).unwrap();
            expected.extend_from_slice(&tag);
            expected.extend_from_slice(&body);
        }
        prop_assert_eq!(ours, expected);
    }

    /// Parts cut at chunk boundaries, encrypted independently in any order (and on rayon), concatenate to
    /// the sequential encryption; decryption of parts likewise.
    #[test]
    fn chunk_ranges_and_parallel_equal_sequential(
        chunks in 0usize..12,
        tail in 0usize..CHUNK_SIZE,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        seed in any::<u8>(),
        nonce in any::<[u8; 24]>(),
        reverse in any::<bool>(),
    ) {
        let cipher = cipher(seed);
        let nonce = Nonce::from_bytes(nonce);
        let plain = data(chunks * CHUNK_SIZE + tail, seed);
        let mut sequential = Vec::new();
        cipher.encrypt_chunks(&nonce, 0, &plain, &mut sequential);

        let mut parallel = Vec::new();
        cipher.encrypt_chunks_parallel(&nonce, 0, &plain, &mut parallel);
        prop_assert_eq!(&parallel, &sequential);

        let total_chunks = plain.len().div_ceil(CHUNK_SIZE);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(total_chunks + 1)).collect();
        bounds.extend([0, total_chunks]);
        bounds.sort_unstable();
        bounds.dedup();
        let mut parts: Vec<(usize, Vec<u8>)> = bounds
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0] * CHUNK_SIZE, (w[1] * CHUNK_SIZE).min(plain.len()));
                let mut out = Vec::new();
                cipher.encrypt_chunks_parallel(&nonce, w[0] as u64, &plain[a..b], &mut out);
                (w[0], out)
            })
            .collect();
        if reverse {
            parts.reverse();
        }
        parts.sort_by_key(|(first, _)| *first);
        let joined: Vec<u8> = parts.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        prop_assert_eq!(&joined, &sequential);

        for w in bounds.windows(2) {
            let (a, b) = (w[0] * ENCRYPTED_CHUNK_SIZE, (w[1] * ENCRYPTED_CHUNK_SIZE).min(sequential.len()));
            let mut seq = Vec::new();
            cipher.decrypt_chunks(&nonce, w[0] as u64, &sequential[a..b], &mut seq).unwrap();
            let mut par = Vec::new();
            cipher.decrypt_chunks_parallel(&nonce, w[0] as u64, &sequential[a..b], &mut par).unwrap();
            let (pa, pb) = (w[0] * CHUNK_SIZE, (w[1] * CHUNK_SIZE).min(plain.len()));
            prop_assert_eq!(&seq, &plain[pa..pb]);
            prop_assert_eq!(&par, &plain[pa..pb]);
        }
    }

    /// Decrypting a range (in memory, or streaming the underlying bytes from the mapped offset) equals
    /// slicing the full decryption.
    #[test]
    fn range_decryption_equals_slicing(
        len in length(),
        offset in 0u64..4 * CHUNK_SIZE as u64,
        count in proptest::option::of(0u64..3 * CHUNK_SIZE as u64),
        seed in any::<u8>(),
        parallel in any::<bool>(),
    ) {
        let cipher = cipher(seed);
        let nonce = Nonce::from_bytes([seed; 24]);
        let plain = data(len, seed);
        let enc = cipher.encrypt(&nonce, &plain);
        let start = (offset as usize).min(len);
        let end = count.map_or(len, |c| (start + c as usize).min(len));
        let expected = &plain[start..end];

        prop_assert_eq!(&cipher.decrypt_range(&enc, offset, count).unwrap(), expected);

        let range = ChunkRange::new(offset, count);
        let from = (range.underlying_offset as usize).min(enc.len());
        let to = range.underlying_len.map_or(enc.len(), |n| (from + n as usize).min(enc.len()));
        prop_assert!(from >= HEADER_SIZE);
        let header_nonce = Nonce::from_header(&enc).unwrap();
        let mut out = Vec::new();
        DecryptReader::for_range(&cipher, header_nonce, &range, &enc[from..to]).parallel(parallel).read_to_end(&mut out).unwrap();
        prop_assert_eq!(&out, expected);
    }

    #[test]
    fn nonce_add_is_192_bit_little_endian_addition(bytes in any::<[u8; 24]>(), a in any::<u64>(), b in any::<u64>()) {
        let n = Nonce::from_bytes(bytes);
        // Reference: schoolbook addition of a into the 192-bit little-endian integer.
        let mut expected = bytes;
        let mut carry = u16::from(0u8);
        for (i, byte) in expected.iter_mut().enumerate() {
            let add = if i < 8 { (a >> (8 * i)) as u8 } else { 0 };
            carry += u16::from(*byte) + u16::from(add);
            *byte = carry as u8;
            carry >>= 8;
        }
        prop_assert_eq!(*n.add(a).as_bytes(), expected);
        prop_assert_eq!(n.add(a).add(b), n.add(b).add(a));
    }

    #[test]
    fn names_round_trip_in_every_mode(
        segments in proptest::collection::vec("[^/]{0,40}", 1..5),
        encoding in prop_oneof![Just(NameEncoding::Base32), Just(NameEncoding::Base64), Just(NameEncoding::Base32768)],
        mode in prop_oneof![Just(NameMode::Standard), Just(NameMode::Obfuscate), Just(NameMode::off(".bin")), Just(NameMode::off("none"))],
        dirs in any::<bool>(),
        seed in any::<u8>(),
    ) {
        let codec = cipher(seed).name_codec(NameOptions { mode, encoding, directory_name_encryption: dirs });
        let path = segments.join("/");
        let off = matches!(codec.options().mode, NameMode::Off { .. });
        let enc = codec.encrypt_path(&path).unwrap();
        if off && path.is_empty() {
            // rclone: in `off` mode a name that is only the suffix is not an encrypted file.
            let refused = matches!(codec.decrypt_path(&enc), Err(s32s3_crypt::Error::NameSuffix { .. }));
            prop_assert!(refused, "off mode accepted a bare suffix");
        } else {
            prop_assert_eq!(codec.decrypt_path(&enc).unwrap(), path.clone());
        }
        let dir = codec.encrypt_dir_path(&path).unwrap();
        prop_assert_eq!(codec.decrypt_dir_path(&dir).unwrap(), path.clone());
        for segment in &segments {
            let e = codec.encrypt_segment(segment).unwrap();
            prop_assert_eq!(&codec.decrypt_segment(&e).unwrap(), segment);
        }
    }

    #[test]
    fn decoders_never_panic(
        text in "\\PC{0,80}",
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        encoding in prop_oneof![Just(NameEncoding::Base32), Just(NameEncoding::Base64), Just(NameEncoding::Base32768)],
        mode in prop_oneof![Just(NameMode::Standard), Just(NameMode::Obfuscate), Just(NameMode::off(".bin"))],
    ) {
        let cipher = cipher(1);
        let codec = cipher.name_codec(NameOptions { mode, encoding, directory_name_encryption: true });
        let _ = codec.decrypt_path(&text);
        let _ = codec.decrypt_dir_path(&text);
        let _ = s32s3_crypt::reveal(&text);
        let _ = cipher.decrypt(&bytes);
        let _ = cipher.decrypt_range(&bytes, 3, Some(5));
        let _ = read_in_pieces(DecryptReader::new(&cipher, &bytes[..]), &[7]);
    }
}

#[test]
fn a_range_ignores_damage_after_it_and_reports_damage_inside_it() {
    let cipher = cipher(3);
    let nonce = Nonce::from_bytes([3; 24]);
    let plain = data(10 * CHUNK_SIZE, 3);
    let mut enc = cipher.encrypt(&nonce, &plain);
    enc[HEADER_SIZE + 7 * ENCRYPTED_CHUNK_SIZE + 100] ^= 1; // chunk 7
    for parallel in [false, true] {
        // Chunks 1..=2, with the whole rest of the object behind the reader (parallel batches read past).
        let range = ChunkRange::new(CHUNK_SIZE as u64 + 5, Some(CHUNK_SIZE as u64));
        let mut out = Vec::new();
        DecryptReader::for_range(&cipher, nonce, &range, &enc[range.underlying_offset as usize..])
            .parallel(parallel)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, &plain[CHUNK_SIZE + 5..2 * CHUNK_SIZE + 5]);
        // A range that includes chunk 7 fails there, after delivering what precedes it.
        let range = ChunkRange::new(6 * CHUNK_SIZE as u64, None);
        let mut reader =
            DecryptReader::for_range(&cipher, nonce, &range, &enc[range.underlying_offset as usize..])
                .parallel(parallel);
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(s32s3_crypt::Error::from_io(&err), Some(&s32s3_crypt::Error::Authentication { chunk: 7 }));
        assert_eq!(out, &plain[6 * CHUNK_SIZE..7 * CHUNK_SIZE]);
    }
}

#[test]
fn too_long_segments_are_an_error_not_a_panic() {
    let codec = cipher(0).name_codec(NameOptions::default());
    let ok = "a".repeat(2047);
    let enc = codec.encrypt_path(&ok).unwrap();
    assert_eq!(enc.len(), 3277);
    assert_eq!(codec.decrypt_path(&enc).unwrap(), ok);
    let long = "a".repeat(2048);
    assert_eq!(codec.encrypt_path(&long), Err(s32s3_crypt::Error::NameTooLong { len: 2048 }));
    assert_eq!(
        codec.encrypt_path(&format!("dir/{long}")),
        Err(s32s3_crypt::Error::NameTooLong { len: 2048 })
    );
    // A decoded name longer than 2048 bytes is refused before EME.
    let too_long_cipher = "0".repeat(3303); // 2064 bytes
    assert!(matches!(
        codec.decrypt_path(&too_long_cipher),
        Err(s32s3_crypt::Error::NameTooLongAfterDecode { .. })
    ));
}
