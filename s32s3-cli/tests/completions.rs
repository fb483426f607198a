//! `s32s3 completions SHELL` and `s32s3 man`: generated from the command-line definitions, on stdout.

use assert_cmd::Command;

/// The commands a user types after `s32s3`.
const COMMANDS: [&str; 11] = [
    "backup",
    "restore",
    "verify",
    "snapshots",
    "daemon",
    "config",
    "crypt",
    "obscure",
    "reveal",
    "completions",
    "man",
];

fn stdout_of(args: &[&str]) -> String {
    let out = Command::cargo_bin("s32s3").unwrap().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(stderr.is_empty(), "{args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completes_every_command_and_setting() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(script.contains("complete -F _s32s3"), "{script}");
    for command in COMMANDS {
        assert!(script.contains(command), "{command} missing:\n{script}");
    }
    // Flags, down to the daemon's and the configuration's.
    for flag in ["--verify-schedule", "--verify-read-data-subset", "--listen", "--source-endpoint"] {
        assert!(script.contains(flag), "{flag} missing");
    }
}

#[test]
fn zsh_and_fish_scripts() {
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef s32s3"), "{zsh}");
    let fish = stdout_of(&["completions", "fish"]);
    assert!(fish.contains("complete -c s32s3"), "{fish}");
    assert!(zsh.contains("backup") && zsh.contains("'--verify-schedule=["), "{zsh}");
    assert!(fish.contains("-a \"backup\"") && fish.contains("-l verify-schedule"), "{fish}");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::cargo_bin("s32s3").unwrap().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"), "the error lists the shells");
}

/// The page's lines from its `.TH` header on; before it only roff's string definitions may come.
fn from_title(page: &str) -> Vec<&str> {
    let lines: Vec<&str> = page.lines().collect();
    let title = lines.iter().position(|l| l.starts_with(".TH ")).expect("a .TH header");
    for line in &lines[..title] {
        assert!(line.starts_with(".ie ") || line.starts_with(".el "), "{line:?} before .TH");
    }
    lines[title..].to_vec()
}

#[test]
fn man_page_is_roff() {
    let page = stdout_of(&["man"]);
    let lines = from_title(&page);
    assert!(lines[0].starts_with(".TH s32s3 1 "), "{}", lines[0]);
    assert!(lines.contains(&".SH SUBCOMMANDS"), "{page}");
    for command in COMMANDS {
        assert!(page.contains(&format!("s32s3\\-{command}(1)")), "{command} missing:\n{page}");
    }
}

#[test]
fn every_command_has_its_page() {
    let daemon = stdout_of(&["man", "daemon"]);
    assert!(from_title(&daemon)[0].starts_with(".TH s32s3-daemon 1 "), "{daemon}");
    // Every setting, with its environment variable.
    for text in ["verify\\-schedule", "S32S3_VERIFY_SCHEDULE", "S32S3_VERIFY_READ_DATA_SUBSET", "listen"] {
        assert!(daemon.contains(text), "{text} missing:\n{daemon}");
    }
    let encrypt = stdout_of(&["man", "crypt", "encrypt"]);
    assert!(from_title(&encrypt)[0].starts_with(".TH s32s3-crypt-encrypt 1 "), "{encrypt}");

    let out = Command::cargo_bin("s32s3").unwrap().args(["man", "crypt", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nope\"") && stderr.contains("encrypt"), "{stderr}");
}

#[test]
fn help_lists_both() {
    let help = stdout_of(&["--help"]);
    assert!(help.contains("completions") && help.contains("man"), "{help}");
}

#[test]
fn no_setting_from_the_environment_reaches_the_page() {
    let out = Command::cargo_bin("s32s3")
        .unwrap()
        .args(["man", "backup"])
        .env("S32S3_CRYPT_PASSWORD", "hunter2-from-env")
        .env("S32S3_SOURCE_ENDPOINT", "http://from-env:9000")
        .output()
        .unwrap();
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains("S32S3_CRYPT_PASSWORD"), "{page}");
    assert!(!page.contains("hunter2") && !page.contains("from-env"), "{page}");
}
