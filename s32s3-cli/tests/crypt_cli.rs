//! `s32s3 crypt …`, `s32s3 obscure`, `s32s3 reveal`, run as the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::Command as Cmd;
use predicates::prelude::*;

const PASSWORD: &str = "potato";
const PASSWORD2: &str = "sausage";
const PASSWORD_OBSCURED: &str = "KaDENAJWkKXV9tuDeAsRoSKpxkb8Og";
const PASSWORD2_OBSCURED: &str = "8PY8UuzTHEzRZp48o2UuYrnFrCPfL60";

fn s32s3() -> Cmd {
    let mut cmd = Cmd::cargo_bin("s32s3").unwrap();
    cmd.env_remove("S32S3_CRYPT_PASSWORD").env_remove("S32S3_CRYPT_PASSWORD2");
    cmd
}

/// `s32s3` with set A's passwords in the environment.
fn with_env() -> Cmd {
    let mut cmd = s32s3();
    cmd.env("S32S3_CRYPT_PASSWORD", PASSWORD).env("S32S3_CRYPT_PASSWORD2", PASSWORD2);
    cmd
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../s32s3-crypt/tests/data/rclone-crypt")
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn obscure_and_reveal_round_trip() {
    let out = s32s3().args(["obscure", "pässwörd 🔑"]).output().unwrap();
    assert!(out.status.success());
    let obscured = String::from_utf8(out.stdout).unwrap();
    assert_ne!(obscured.trim(), "pässwörd 🔑");
    s32s3().args(["reveal", obscured.trim()]).assert().success().stdout("pässwörd 🔑\n");
    // From stdin, so the secret stays out of the process list.
    let out = s32s3().arg("obscure").write_stdin("from stdin\n").output().unwrap();
    let obscured = String::from_utf8(out.stdout).unwrap();
    s32s3().arg("reveal").write_stdin(obscured).assert().success().stdout("from stdin\n");
    s32s3().args(["reveal", PASSWORD_OBSCURED]).assert().success().stdout("potato\n");
}

/// Obscured values are base64url: one in 64 begins with `-`, and must not be read as a flag (this one,
/// from a failed run, was taken for `-V` and printed the version).
#[test]
fn values_beginning_with_a_hyphen_are_values() {
    s32s3()
        .args(["reveal", "-Vuo4cMYp7OQfaCszuBNFAZIwAaQBkiC_Hi-mb-sVQ"])
        .assert()
        .success()
        .stdout("pässwörd 🔑\n");
    let out = s32s3().args(["obscure", "-hunter2"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let obscured = String::from_utf8(out.stdout).unwrap();
    s32s3().args(["reveal", obscured.trim()]).assert().success().stdout("-hunter2\n");
}

#[test]
fn reveal_errors_are_one_line() {
    s32s3()
        .args(["reveal", "not base64!"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("s32s3: error: base64 decode failed when revealing password - is it obscured?\n");
    s32s3().args(["reveal", "YWFh"]).assert().code(1).stderr(predicate::str::contains("input too short"));
}

#[test]
fn names_match_rclone_vectors() {
    with_env()
        .args(["crypt", "encode-name", "hello.txt", "dir/sub/file.txt", "file-v2001-02-03-040506-123.txt"])
        .assert()
        .success()
        .stdout(
            "dvhjn229ej4s3k94n1mf5une30\n\
             fiooieinr1qr8o3th3fofaipek/sodtmigcit30440p0snsrujo5o/ee1okdgjsatr65qq67i0aih9og\n\
             ee1okdgjsatr65qq67i0aih9og-v2001-02-03-040506-123\n",
        );
    s32s3()
        .args(["crypt", "decode-name", "--obscured", "--password", PASSWORD_OBSCURED])
        .args(["--password2", PASSWORD2_OBSCURED, "dvhjn229ej4s3k94n1mf5une30"])
        .assert()
        .success()
        .stdout("hello.txt\n");
    with_env()
        .args(["crypt", "encode-name", "--filename-encoding", "base64", "hello.txt"])
        .assert()
        .stdout("b-M7iEl0ycHRJLhs8vruGA\n");
    with_env()
        .args(["crypt", "encode-name", "--filename-encoding", "base32768", "hello.txt"])
        .assert()
        .stdout("幑畂⛎狼㓉㤡聅ꆎ⬿\n");
    with_env()
        .args(["crypt", "encode-name", "--filename-encryption", "obfuscate", "hello.txt"])
        .assert()
        .stdout("162.zwDDG.LPL\n");
    with_env()
        .args(["crypt", "encode-name", "--filename-encryption", "off", "hello.txt"])
        .assert()
        .stdout("hello.txt.bin\n");
    with_env()
        .args(["crypt", "encode-name", "--filename-encryption", "off", "--suffix", "none", "hello.txt"])
        .assert()
        .stdout("hello.txt\n");
    with_env()
        .args(["crypt", "encode-name", "--directory-name-encryption", "false", "dir/sub/file.txt"])
        .assert()
        .stdout("dir/sub/ee1okdgjsatr65qq67i0aih9og\n");
    with_env()
        .args(["crypt", "encode-name", "--dir", "dir/sub"])
        .assert()
        .stdout("fiooieinr1qr8o3th3fofaipek/sodtmigcit30440p0snsrujo5o\n");
    // Names from stdin, one per line.
    with_env()
        .args(["crypt", "decode-name"])
        .write_stdin("dvhjn229ej4s3k94n1mf5une30\n")
        .assert()
        .stdout("hello.txt\n");
}

#[test]
fn name_errors_and_partial_failures() {
    with_env()
        .args(["crypt", "decode-name", "dvhjn229ej4s3k94n1mf5une30", "bogus"])
        .assert()
        .code(3)
        .stdout("hello.txt\n")
        .stderr(predicate::str::contains("\"bogus\": not an encrypted name"));
    with_env().args(["crypt", "decode-name", "bogus"]).assert().code(1);
    with_env()
        .args(["crypt", "encode-name", &"a".repeat(2048)])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("name segment too long to encrypt: 2048 bytes"));
    with_env().args(["crypt", "encode-name", "--filename-encoding", "base99", "x"]).assert().code(2);
}

#[test]
fn passwords_are_required_and_never_printed() {
    s32s3()
        .args(["crypt", "encode-name", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--password"));
    s32s3()
        .args(["crypt", "encode-name", "--password", "", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("the crypt password is empty"));
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("x.enc");
    with_env().args(["crypt", "encrypt", "-o"]).arg(&enc).write_stdin(data(1000)).assert().success();
    let out = s32s3()
        .args(["crypt", "decrypt", "-i"])
        .arg(&enc)
        .env("S32S3_CRYPT_PASSWORD", "SeCrEt-WrOnG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("failed to authenticate chunk 0: wrong password or corrupted data"), "{stderr}");
    assert!(!stderr.contains("SeCrEt") && !stderr.contains(PASSWORD2), "{stderr}");
    let help =
        String::from_utf8(with_env().args(["crypt", "encrypt", "--help"]).output().unwrap().stdout).unwrap();
    assert!(help.contains("S32S3_CRYPT_PASSWORD") && !help.contains(PASSWORD2), "{help}");
    // Bad obscured value: the error names the flag, not its value.
    let out = s32s3()
        .args(["crypt", "encode-name", "--obscured", "--password", "plain-not-obscured!", "x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("revealing --password") && !stderr.contains("plain-not-obscured"), "{stderr}");
}

#[test]
fn encrypt_decrypt_round_trip_files_and_pipes() {
    let dir = tempfile::tempdir().unwrap();
    for (len, threads) in [
        (0usize, None),
        (1, Some("1")),
        (65_537, None),
        (5 * 65_536 * 64 + 3, Some("2")),
        (9_000_000, Some("1")),
    ] {
        let plain = data(len);
        let input = dir.path().join("plain");
        std::fs::write(&input, &plain).unwrap();
        let enc = dir.path().join("enc");
        let mut cmd = with_env();
        cmd.args(["crypt", "encrypt", "-i"]).arg(&input).arg("-o").arg(&enc);
        if let Some(t) = threads {
            cmd.args(["--threads", t]);
        }
        cmd.assert().success().stdout("");
        let sealed = std::fs::read(&enc).unwrap();
        assert_eq!(sealed.len() as u64, s32s3_crypt::encrypted_size(len as u64));
        let cipher = s32s3_crypt::Cipher::new(PASSWORD, PASSWORD2).unwrap();
        assert_eq!(cipher.decrypt(&sealed).unwrap(), plain, "len {len}");
        // Back through stdin/stdout.
        let mut cmd = with_env();
        cmd.args(["crypt", "decrypt"]);
        if let Some(t) = threads {
            cmd.args(["--threads", t]);
        }
        let out = cmd.write_stdin(sealed).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == plain, "len {len}");
    }
}

#[test]
fn decrypts_rclone_objects_and_ranges() {
    let enc = vectors().join("files/A/size_131073.enc");
    let plain = std::fs::read(vectors().join("files/A/size_131073.plain")).unwrap();
    let out = with_env().args(["crypt", "decrypt", "-i"]).arg(&enc).output().unwrap();
    assert!(out.status.success() && out.stdout == plain);
    for (offset, count) in
        [(0u64, Some(10u64)), (65_530, Some(20)), (65_536, None), (131_072, Some(5)), (200_000, None)]
    {
        let start = (offset as usize).min(plain.len());
        let end = count.map_or(plain.len(), |c| (start + c as usize).min(plain.len()));
        let mut args =
            vec!["crypt".to_owned(), "decrypt".to_owned(), "--offset".to_owned(), offset.to_string()];
        if let Some(c) = count {
            args.extend(["--count".to_owned(), c.to_string()]);
        }
        let from_file = with_env().args(&args).arg("-i").arg(&enc).output().unwrap();
        assert!(from_file.status.success(), "{}", String::from_utf8_lossy(&from_file.stderr));
        assert!(from_file.stdout == plain[start..end], "file {offset} {count:?}");
        let from_pipe = with_env().args(&args).write_stdin(std::fs::read(&enc).unwrap()).output().unwrap();
        assert!(from_pipe.stdout == plain[start..end], "pipe {offset} {count:?}");
    }
    // Negative vectors: one clear line each.
    for (file, message) in [
        ("negative/bad_magic.enc", "not an encrypted file - bad magic string"),
        ("negative/short_header_31.enc", "file is too short to be encrypted"),
        ("negative/header_plus_16.enc", "file has truncated block header"),
        ("negative/wrong_key_B.enc", "failed to authenticate chunk 0"),
    ] {
        with_env()
            .args(["crypt", "decrypt", "-i"])
            .arg(vectors().join(file))
            .assert()
            .code(1)
            .stderr(predicate::str::contains(message).and(predicate::str::contains(file)));
    }
}

fn rclone(config: &Path, args: &[&str], stdin: Option<&Path>) -> std::process::Output {
    let found = Command::new("rclone").arg("version").stdout(Stdio::null()).status();
    assert!(matches!(found, Ok(s) if s.success()), "the `rclone` binary was not found: run scripts/setup");
    let mut cmd = Command::new("rclone");
    cmd.args(args).env("RCLONE_CONFIG", config).env_remove("AWS_CA_BUNDLE");
    if let Some(path) = stdin {
        cmd.stdin(std::fs::File::open(path).unwrap());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "rclone {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn cli_interop_with_rclone_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let config = dir.path().join("rclone.conf");
    std::fs::write(
        &config,
        format!("[c]\ntype = crypt\nremote = {}\npassword = {PASSWORD_OBSCURED}\npassword2 = {PASSWORD2_OBSCURED}\n", raw.display()),
    )
    .unwrap();
    let plain = data(3 * 1024 * 1024 + 1);
    let input = dir.path().join("plain");
    std::fs::write(&input, &plain).unwrap();

    // s32s3 writes object and name; rclone lists and reads them.
    let name = "backups/März 2024/data file.bin";
    let out = with_env().args(["crypt", "encode-name", name]).output().unwrap();
    let encrypted_name = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let target = raw.join(&encrypted_name);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    with_env().args(["crypt", "encrypt", "-i"]).arg(&input).arg("-o").arg(&target).assert().success();
    let listed = rclone(&config, &["lsf", "-R", "--files-only", "c:"], None);
    assert_eq!(String::from_utf8(listed.stdout).unwrap(), format!("{name}\n"));
    let cat = rclone(&config, &["cat", &format!("c:{name}")], None);
    assert!(cat.stdout == plain, "rclone cat differs");

    // rclone writes (rcat, streamed); s32s3 decodes the name and decrypts.
    rclone(&config, &["rcat", "c:from rclone/ünïcode.bin"], Some(&input));
    let stored: Vec<_> = walk(&raw).into_iter().filter(|p| p != &encrypted_name).collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    with_env()
        .args(["crypt", "decode-name", &stored[0]])
        .assert()
        .success()
        .stdout("from rclone/ünïcode.bin\n");
    let out = with_env().args(["crypt", "decrypt", "-i"]).arg(raw.join(&stored[0])).output().unwrap();
    assert!(out.status.success() && out.stdout == plain);
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned());
            }
        }
    }
    out
}

/// The help texts an operator reads (snapshots in `tests/snapshots`).
#[test]
fn help_snapshots() {
    for args in [
        &["crypt", "--help"][..],
        &["crypt", "encrypt", "--help"],
        &["crypt", "decrypt", "--help"],
        &["crypt", "encode-name", "--help"],
        &["obscure", "--help"],
        &["reveal", "--help"],
    ] {
        let out = s32s3().args(args).env("COLUMNS", "100").output().unwrap();
        assert!(out.status.success());
        let name = args.iter().filter(|a| !a.starts_with('-')).copied().collect::<Vec<_>>().join("-");
        insta::assert_snapshot!(format!("help-{name}"), String::from_utf8(out.stdout).unwrap());
    }
}
