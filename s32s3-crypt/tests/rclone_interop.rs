//! Interop with the real `rclone` binary (Debian's 1.60.1, installed by `scripts/setup`), both ways:
//! objects and names s32s3 writes are read by `rclone cat`/`lsf` through a crypt remote over a local
//! directory, and what `rclone copy`/`rcat` writes there is decrypted by s32s3.
//!
//! These tests fail (never skip) when `rclone` is missing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use s32s3_crypt::{Cipher, EncryptReader, NameEncoding, NameMode, NameOptions, obscure};

const PASSWORD: &str = "interop pässword";
const PASSWORD2: &str = "interop salt";

/// Sizes from the issue: empty, one byte, around one chunk, and 3 MiB + 1.
const SIZES: [usize; 6] = [0, 1, 65535, 65536, 65537, 3 * 1024 * 1024 + 1];

fn names() -> Vec<String> {
    vec![
        "plain.txt".to_owned(),
        "with spaces/and  two  spaces .txt".to_owned(),
        "unicode Привет мир/日本語のファイル名 🔑.dat".to_owned(),
        "café/NFD cafe\u{301}.txt".to_owned(),
        format!("long/{}", "a".repeat(143)),
        "report-v2001-02-03-040506-123.txt".to_owned(),
        "deep/1/2/3/4/5/leaf".to_owned(),
    ]
}

fn rclone_binary() -> &'static str {
    let found = Command::new("rclone").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        matches!(found, Ok(status) if status.success()),
        "the `rclone` binary is needed for the interop tests and was not found: run scripts/setup"
    );
    "rclone"
}

struct Remote {
    name: &'static str,
    options: NameOptions,
    extra: &'static str,
}

fn remotes() -> Vec<Remote> {
    let opts = |mode, encoding, dirs| NameOptions { mode, encoding, directory_name_encryption: dirs };
    vec![
        Remote { name: "std32", options: opts(NameMode::Standard, NameEncoding::Base32, true), extra: "" },
        Remote {
            name: "std64",
            options: opts(NameMode::Standard, NameEncoding::Base64, true),
            extra: "filename_encoding = base64\n",
        },
        Remote {
            name: "std32768",
            options: opts(NameMode::Standard, NameEncoding::Base32768, true),
            extra: "filename_encoding = base32768\n",
        },
        Remote {
            name: "nodir",
            options: opts(NameMode::Standard, NameEncoding::Base32, false),
            extra: "directory_name_encryption = false\n",
        },
        Remote {
            name: "obf",
            options: opts(NameMode::Obfuscate, NameEncoding::Base32, true),
            extra: "filename_encryption = obfuscate\n",
        },
        Remote {
            name: "off",
            options: opts(NameMode::off(".bin"), NameEncoding::Base32, true),
            extra: "filename_encryption = off\n",
        },
    ]
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        rclone_binary();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let mut conf = String::new();
        for remote in remotes() {
            writeln!(
                conf,
                "[{}]\ntype = crypt\nremote = {}\npassword = {}\npassword2 = {}\n{}",
                remote.name,
                root.join("raw").join(remote.name).display(),
                obscure(PASSWORD).unwrap(),
                obscure(PASSWORD2).unwrap(),
                remote.extra
            )
            .unwrap();
        }
        let config = root.join("rclone.conf");
        std::fs::write(&config, conf).unwrap();
        Env { _dir: dir, root, config }
    }

    fn raw(&self, remote: &str) -> PathBuf {
        self.root.join("raw").join(remote)
    }

    fn rclone(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(rclone_binary());
        cmd.args(args)
            .env("RCLONE_CONFIG", &self.config)
            .env_remove("AWS_CA_BUNDLE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().unwrap();
        if let Some(data) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rclone {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
}

fn plaintext(size: usize, salt: usize) -> Vec<u8> {
    (0..size).map(|i| ((i * 131 + salt * 7) % 256) as u8).collect()
}

fn cipher() -> Cipher {
    Cipher::new(PASSWORD, PASSWORD2).unwrap()
}

/// Every file under `dir`, as `/`-separated paths relative to it.
fn walk(dir: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                go(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.push(
                    rel.components().map(|c| c.as_os_str().to_str().unwrap()).collect::<Vec<_>>().join("/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        go(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[test]
fn rclone_reads_what_s32s3_writes() {
    let env = Env::new();
    let cipher = cipher();
    for remote in remotes() {
        let codec = cipher.name_codec(remote.options.clone());
        let mut expected = BTreeMap::new();
        for (i, name) in names().iter().enumerate() {
            let size = SIZES[i % SIZES.len()];
            let plain = plaintext(size, i);
            let encrypted_name = codec.encrypt_path(name).unwrap();
            let path = env.raw(remote.name).join(&encrypted_name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut enc = Vec::new();
            std::io::Read::read_to_end(&mut EncryptReader::new(&cipher, &plain[..]).unwrap(), &mut enc)
                .unwrap();
            std::fs::write(&path, enc).unwrap();
            expected.insert(name.clone(), plain);
        }
        let listing = env.rclone(&["lsf", "-R", "--files-only", &format!("{}:", remote.name)], None);
        let listed: Vec<String> =
            String::from_utf8(listing.stdout).unwrap().lines().map(str::to_owned).collect();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        assert_eq!(listed_sorted, expected.keys().cloned().collect::<Vec<_>>(), "remote {}", remote.name);
        for (name, plain) in &expected {
            let out = env.rclone(&["cat", &format!("{}:{name}", remote.name)], None);
            assert!(out.stdout == *plain, "remote {} file {name:?}: rclone cat differs", remote.name);
        }
    }
    // Every size through the default remote, one file each.
    let codec = cipher.name_codec(NameOptions::default());
    for (i, size) in SIZES.iter().enumerate() {
        let plain = plaintext(*size, 100 + i);
        let name = format!("sizes/size {size}.bin");
        let path = env.raw("std32").join(codec.encrypt_path(&name).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut enc = Vec::new();
        std::io::Read::read_to_end(
            &mut EncryptReader::new(&cipher, &plain[..]).unwrap().parallel(true),
            &mut enc,
        )
        .unwrap();
        std::fs::write(&path, enc).unwrap();
        let out = env.rclone(&["cat", &format!("std32:{name}")], None);
        assert!(out.stdout == plain, "size {size}: rclone cat differs");
    }
    // rclone's own consistency check over everything we wrote: sizes via DecryptedSize, contents via
    // --download against a plaintext copy.
    let plain_dir = env.root.join("plain-check");
    for (i, size) in SIZES.iter().enumerate() {
        let p = plain_dir.join("sizes").join(format!("size {size}.bin"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, plaintext(*size, 100 + i)).unwrap();
    }
    env.rclone(&["check", "--download", plain_dir.join("sizes").to_str().unwrap(), "std32:sizes"], None);
}

#[test]
fn s32s3_reads_what_rclone_writes() {
    let env = Env::new();
    let cipher = cipher();
    let plain_dir = env.root.join("plain");
    let mut expected = BTreeMap::new();
    for (i, name) in names().iter().enumerate() {
        let plain = plaintext(SIZES[i % SIZES.len()], i);
        let path = plain_dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &plain).unwrap();
        expected.insert(name.clone(), plain);
    }
    for remote in remotes() {
        env.rclone(&["copy", plain_dir.to_str().unwrap(), &format!("{}:", remote.name)], None);
        // rcat: a streamed upload (no size known in advance), every size.
        for (i, size) in SIZES.iter().enumerate() {
            let plain = plaintext(*size, 200 + i);
            env.rclone(&["rcat", &format!("{}:rcat/size {size}", remote.name)], Some(&plain));
            expected.insert(format!("rcat/size {size}"), plain);
        }
        let codec = cipher.name_codec(remote.options.clone());
        let raw = env.raw(remote.name);
        let mut decrypted = BTreeMap::new();
        for encrypted_name in walk(&raw) {
            let name = codec
                .decrypt_path(&encrypted_name)
                .unwrap_or_else(|err| panic!("remote {}: {encrypted_name:?}: {err}", remote.name));
            assert_eq!(codec.encrypt_path(&name).unwrap(), encrypted_name, "remote {}", remote.name);
            let object = std::fs::read(raw.join(&encrypted_name)).unwrap();
            let plain = cipher.decrypt(&object).unwrap_or_else(|err| panic!("{name:?}: {err}"));
            decrypted.insert(name, plain);
        }
        assert_eq!(decrypted.len(), expected.len(), "remote {}", remote.name);
        for (name, plain) in &expected {
            assert!(decrypted.get(name) == Some(plain), "remote {} {name:?}", remote.name);
        }
        for size in SIZES {
            expected.remove(&format!("rcat/size {size}"));
        }
    }
}
