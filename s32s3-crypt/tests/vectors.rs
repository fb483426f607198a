//! Every vector rclone 1.60.1 produced (copied from the shared vectors into `tests/data/rclone-crypt`).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use s32s3_crypt::{
    Cipher, DecryptReader, EncryptReader, Error, Key, NameEncoding, NameMode, NameOptions, Nonce,
    decrypted_size, encrypted_size, obscure_with_iv, reveal,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rclone-crypt")
}

fn jsonl(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(data_dir().join(name)).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(rel)).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Ciphers for sets A, B, C (derived from the passwords) and Z (all zero), each checked against the
/// recorded keys.
fn ciphers() -> HashMap<String, Cipher> {
    let mut out = HashMap::new();
    for rec in jsonl("keys.jsonl") {
        let set = s(&rec, "set").to_owned();
        let key = Key::derive(s(&rec, "password"), s(&rec, "password2")).unwrap();
        if set != "Z" {
            assert_eq!(hex::encode(key.data_key()), s(&rec, "data_key"), "set {set}");
            assert_eq!(hex::encode(key.name_key()), s(&rec, "name_key"), "set {set}");
            assert_eq!(hex::encode(key.name_tweak()), s(&rec, "name_tweak"), "set {set}");
        }
        out.insert(set, Cipher::from_key(key));
    }
    assert!(out.contains_key("Z") && out.len() == 4);
    out
}

#[test]
fn keys_derive_as_rclone_including_obscured_config_values() {
    for rec in jsonl("keys.jsonl") {
        let set = s(&rec, "set");
        let key = Key::derive(s(&rec, "password"), s(&rec, "password2")).unwrap();
        if set == "Z" {
            assert_eq!(key.data_key(), &[0; 32]);
            assert_eq!(key.name_key(), &[0; 32]);
            assert_eq!(key.name_tweak(), &[0; 16]);
            continue;
        }
        assert_eq!(hex::encode(key.data_key()), s(&rec, "data_key"), "set {set}");
        assert_eq!(hex::encode(key.name_key()), s(&rec, "name_key"), "set {set}");
        assert_eq!(hex::encode(key.name_tweak()), s(&rec, "name_tweak"), "set {set}");
        // The obscured forms in rclone.conf reveal to the passwords.
        assert_eq!(reveal(s(&rec, "password_obscured")).unwrap(), s(&rec, "password"));
        let p2 = s(&rec, "password2_obscured");
        if !p2.is_empty() {
            assert_eq!(reveal(p2).unwrap(), s(&rec, "password2"));
        }
        // The salt rule: empty password2 means rclone's default salt.
        let salt = hex::decode(s(&rec, "salt_used_hex")).unwrap();
        let via_salt = Key::derive(s(&rec, "password"), &salt).unwrap();
        assert_eq!(via_salt.data_key(), key.data_key());
    }
}

#[test]
fn obscure_vectors() {
    for rec in jsonl("obscure.jsonl") {
        let iv: [u8; 16] = hex::decode(s(&rec, "iv_hex")).unwrap().try_into().unwrap();
        assert_eq!(obscure_with_iv(s(&rec, "plaintext"), &iv), s(&rec, "obscured"));
        assert_eq!(reveal(s(&rec, "obscured")).unwrap(), s(&rec, "plaintext"));
    }
}

fn options_of(rec: &Value) -> NameOptions {
    let mode: NameMode = s(rec, "filename_encryption").parse().unwrap();
    let encoding: NameEncoding = s(rec, "filename_encoding").parse().unwrap();
    NameOptions {
        mode,
        encoding,
        directory_name_encryption: rec["directory_name_encryption"].as_bool().unwrap(),
    }
}

#[test]
fn all_333_names_encrypt_and_decrypt_as_rclone() {
    let ciphers = ciphers();
    let records = jsonl("names.jsonl");
    assert_eq!(records.len(), 333);
    for rec in &records {
        let codec = ciphers[s(rec, "set")].name_codec(options_of(rec));
        let (plain, enc) = (s(rec, "plaintext"), s(rec, "encrypted"));
        assert_eq!(codec.encrypt_path(plain).unwrap(), enc, "{} {plain:?}", s(rec, "remote"));
        assert_eq!(codec.decrypt_path(enc).unwrap(), plain, "{} {enc:?}", s(rec, "remote"));
    }
}

#[test]
fn negative_names() {
    let ciphers = ciphers();
    let codec = ciphers["A"].name_codec(NameOptions::default());
    for rec in jsonl("names_negative.jsonl") {
        assert_eq!(s(&rec, "filename_encoding"), "base32");
        let got = codec.decrypt_path(s(&rec, "encrypted"));
        match s(&rec, "expected") {
            "error" => assert!(got.is_err(), "{rec}: {got:?}"),
            ok => assert_eq!(got.unwrap(), ok.strip_prefix("ok:").unwrap(), "{rec}"),
        }
    }
    // The specific errors.
    assert!(matches!(codec.decrypt_path("64="), Err(Error::NameEncoding { encoding: "base32" })));
    assert!(matches!(codec.decrypt_path("!"), Err(Error::NameEncoding { .. })));
    assert!(matches!(codec.decrypt_path("64"), Err(Error::NameNotMultipleOfBlockSize { len: 1 })));
    assert!(matches!(codec.decrypt_path("p0e52nreeaj0a5ea7s64m4j72s"), Err(Error::NamePadding)));
}

#[test]
fn sizes_table() {
    let text = std::fs::read_to_string(data_dir().join("sizes.tsv")).unwrap();
    let mut n = 0;
    for line in text.lines().skip(1) {
        let (plain, enc) = line.split_once('\t').unwrap();
        let (plain, enc): (u64, u64) = (plain.parse().unwrap(), enc.parse().unwrap());
        assert_eq!(encrypted_size(plain), enc, "{plain}");
        assert_eq!(decrypted_size(enc).unwrap(), plain, "{enc}");
        n += 1;
    }
    assert_eq!(n, 15);
}

fn nonce_of(rec: &Value) -> Nonce {
    Nonce::from_bytes(hex::decode(s(rec, "nonce_hex")).unwrap().try_into().unwrap())
}

fn stream_decrypt(cipher: &Cipher, data: &[u8], parallel: bool) -> (Vec<u8>, Option<Error>) {
    let mut reader = DecryptReader::new(cipher, data).parallel(parallel);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 7919];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) => return (out, Some(Error::from_io(&err).cloned().expect("a crypt error"))),
        }
    }
}

#[test]
fn rclone_files_decrypt_and_reencrypt_bit_identically() {
    let ciphers = ciphers();
    let records = jsonl("files.jsonl");
    assert_eq!(records.len(), 18);
    for rec in &records {
        let cipher = &ciphers[s(rec, "set")];
        let enc = read(s(rec, "encrypted_file"));
        let plain = read(s(rec, "plaintext_file"));
        assert_eq!(enc.len() as u64, rec["encrypted_size"].as_u64().unwrap());
        assert_eq!(plain.len() as u64, rec["plaintext_size"].as_u64().unwrap());
        assert_eq!(cipher.decrypt(&enc).unwrap(), plain, "{}", s(rec, "encrypted_file"));
        for parallel in [false, true] {
            let (out, err) = stream_decrypt(cipher, &enc, parallel);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(out, plain);
        }
        let nonce = nonce_of(rec);
        assert_eq!(cipher.encrypt(&nonce, &plain), enc, "{}", s(rec, "encrypted_file"));
        let mut streamed = Vec::new();
        EncryptReader::with_nonce(cipher, nonce, &plain[..]).read_to_end(&mut streamed).unwrap();
        assert_eq!(streamed, enc);
        if let Some(tag) = rec["first_chunk_tag_hex"].as_str().filter(|t| !t.is_empty()) {
            assert_eq!(hex::encode(&enc[32..48]), tag);
        }
        if rec["remote"] == "A_std32" || rec["remote"] == "B_std32" || rec["remote"] == "C_std32" {
            let codec = cipher.name_codec(NameOptions::default());
            assert_eq!(
                codec.encrypt_path(s(rec, "plaintext_path")).unwrap(),
                s(rec, "encrypted_name_on_remote")
            );
        }
    }
}

#[test]
fn fixed_nonce_files_including_carry_and_wrap() {
    let ciphers = ciphers();
    for rec in jsonl("files_fixed_nonce.jsonl") {
        let cipher = &ciphers[s(&rec, "set")];
        let nonce = nonce_of(&rec);
        let plain = read(s(&rec, "plaintext_file"));
        let enc = read(s(&rec, "encrypted_file"));
        assert_eq!(cipher.encrypt(&nonce, &plain), enc, "{}", s(&rec, "encrypted_file"));
        assert_eq!(cipher.decrypt(&enc).unwrap(), plain);
        for (i, chunk_nonce) in rec["chunk_nonces_hex"].as_array().unwrap().iter().enumerate() {
            assert_eq!(hex::encode(nonce.add(i as u64).as_bytes()), chunk_nonce.as_str().unwrap());
        }
        let codec = cipher.name_codec(NameOptions::default());
        let leaf = Path::new(s(&rec, "encrypted_file")).file_name().unwrap().to_str().unwrap();
        let plain_name = format!("fixed/{}", leaf.replace(".enc", ".dat"));
        assert_eq!(codec.encrypt_path(&plain_name).unwrap(), s(&rec, "encrypted_name_on_remote"));
    }
}

#[test]
fn rclone_unit_test_files_zero_key() {
    let cipher = &ciphers()["Z"];
    for rec in jsonl("data_zero_key.jsonl") {
        let nonce = nonce_of(&rec);
        let plain = hex::decode(s(&rec, "plaintext_hex")).unwrap();
        let enc = hex::decode(s(&rec, "ciphertext_hex")).unwrap();
        assert_eq!(cipher.encrypt(&nonce, &plain), enc);
        assert_eq!(cipher.decrypt(&enc).unwrap(), plain);
    }
}

fn apply_recipe(recipe: &Value) -> Vec<u8> {
    let mut data = read(s(recipe, "base"));
    match s(recipe, "op") {
        "xor_byte" => {
            let off = recipe["offset"].as_u64().unwrap() as usize;
            data[off] ^= recipe["value"].as_u64().unwrap() as u8;
        }
        "truncate" => data.truncate(recipe["length"].as_u64().unwrap() as usize),
        "swap_ranges" => {
            let a: Vec<usize> =
                recipe["a"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            let b: Vec<usize> =
                recipe["b"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            let (ra, rb) = (data[a[0]..a[1]].to_vec(), data[b[0]..b[1]].to_vec());
            assert_eq!(ra.len(), rb.len());
            data[a[0]..a[1]].copy_from_slice(&rb);
            data[b[0]..b[1]].copy_from_slice(&ra);
        }
        op => panic!("unknown recipe {op}"),
    }
    data
}

#[test]
fn negative_files_fail_with_the_right_error_after_the_right_output() {
    let ciphers = ciphers();
    let records = jsonl("negative.jsonl");
    assert_eq!(records.len(), 9);
    let mut seen = 0;
    for rec in &records {
        let cipher = &ciphers[s(rec, "decrypt_with_set")];
        let data = if let Some(file) = rec["file"].as_str() {
            read(file)
        } else {
            let data = apply_recipe(&rec["recipe"]);
            assert_eq!(hex::encode(Sha256::digest(&data)), s(rec, "recipe_result_sha256"));
            data
        };
        let before = rec["plaintext_bytes_before_error"].as_u64().unwrap() as usize;
        let rclone_error = s(rec, "rclone_head_error");
        let expect = |err: &Error| match rclone_error {
            "file is too short to be encrypted" => matches!(err, Error::TooShort { .. }),
            "not an encrypted file - bad magic string" => matches!(err, Error::BadMagic),
            "file has truncated block header" => {
                matches!(err, Error::TruncatedChunk { chunk, .. } if *chunk == before as u64 / 65536)
            }
            "failed to authenticate decrypted block - bad password?" => {
                matches!(err, Error::Authentication { chunk } if *chunk == before as u64 / 65536)
                    && err.to_string().contains("wrong password or corrupted data")
            }
            other => panic!("unexpected rclone error {other}"),
        };
        for parallel in [false, true] {
            let (out, err) = stream_decrypt(cipher, &data, parallel);
            let original = read("files/A/size_131073.plain");
            if s(rec, "expected") == "ok_but_truncated" {
                assert!(err.is_none());
                assert_eq!(out, &original[..before]);
                // With the expected size the truncation is caught.
                let mut r = DecryptReader::new(cipher, &data[..]).expect_size(original.len() as u64);
                let e = r.read_to_end(&mut Vec::new()).unwrap_err();
                assert_eq!(
                    Error::from_io(&e),
                    Some(&Error::UnexpectedSize { expected: 131_073, actual: 131_072 })
                );
            } else {
                let err = err.unwrap_or_else(|| panic!("{rec} decrypted"));
                assert!(expect(&err), "{rec}: {err:?}");
                assert_eq!(out.len(), before, "{rec}");
                if before > 0 {
                    assert_eq!(out, &original[..before]);
                }
            }
        }
        let whole = cipher.decrypt(&data);
        if s(rec, "expected") == "ok_but_truncated" {
            assert_eq!(whole.unwrap().len(), before);
        } else {
            assert!(expect(&whole.unwrap_err()), "{rec}");
        }
        seen += 1;
    }
    assert_eq!(seen, 9);
}
