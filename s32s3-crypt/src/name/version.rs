//! rclone's version suffixes (`lib/version`): `name-vYYYY-MM-DD-HHMMSS-mmm.ext`.
//!
//! `--s3-versions`/`--b2-versions` listings insert such a suffix before the extension; crypt strips it
//! from a file's leaf name before encrypting and re-inserts it (in clear) before the extension of the
//! result, and mirrors that when decrypting. Go validates the suffix by parsing it as a time
//! (`-v2006-01-02-150405.000`), so an impossible date such as February 30th is not a version.

/// Length of `-vYYYY-MM-DD-HHMMSS-mmm`.
const VERSION_LEN: usize = 23;

/// Go's `path.Ext` for one segment, with rclone's twist that `.file` has no extension.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(0) | None => (name, ""),
        Some(dot) => name.split_at(dot),
    }
}

/// Go `regexp` `-v\d{4}-\d{2}-\d{2}-\d{6}-\d{3}` anywhere in `name` (`version.Match`).
fn matches(name: &str) -> bool {
    const PATTERN: &[u8] = b"-v0000-00-00-000000-000";
    let bytes = name.as_bytes();
    bytes
        .windows(VERSION_LEN)
        .any(|w| w.iter().zip(PATTERN).all(|(&b, &p)| if p == b'0' { b.is_ascii_digit() } else { b == p }))
}

fn num(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0, |acc, &b| acc * 10 + u32::from(b - b'0'))
}

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whether `s` (23 bytes) parses as Go's `-v2006-01-02-150405-000` with a valid date and time.
fn is_valid_version(s: &[u8]) -> bool {
    if s.len() != VERSION_LEN || !s.starts_with(b"-v") {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| s[range].iter().all(u8::is_ascii_digit);
    let shape = digits(2..6)
        && s[6] == b'-'
        && digits(7..9)
        && s[9] == b'-'
        && digits(10..12)
        && s[12] == b'-'
        && digits(13..19)
        && s[19] == b'-'
        && digits(20..23);
    if !shape {
        return false;
    }
    let (year, month, day) = (num(&s[2..6]), num(&s[7..9]), num(&s[10..12]));
    let (hour, minute, second) = (num(&s[13..15]), num(&s[15..17]), num(&s[17..19]));
    (1..=12).contains(&month)
        && day >= 1
        && day <= days_in(month, year)
        && hour < 24
        && minute < 60
        && second < 60
}

/// `version.Remove` when it succeeds: the name without its version, and the version text.
pub(crate) fn remove(name: &str) -> Option<(String, &str)> {
    if !matches(name) {
        return None;
    }
    let (base, ext) = split_ext(name);
    if base.len() < VERSION_LEN {
        return None;
    }
    let start = base.len() - VERSION_LEN;
    let version = base.get(start..)?;
    if !is_valid_version(version.as_bytes()) {
        return None;
    }
    Some((format!("{}{ext}", &base[..start]), version))
}

/// `version.Add`: inserts `version` before the extension of `name`.
pub(crate) fn add(name: &str, version: &str) -> String {
    let (base, ext) = split_ext(name);
    format!("{base}{version}{ext}")
}

#[cfg(test)]
mod tests {
    use super::{add, remove};

    #[test]
    fn table() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("file-v2001-02-03-040506-123.txt", Some(("file.txt", "-v2001-02-03-040506-123"))),
            ("photo-v2023-07-17-161032-000", Some(("photo", "-v2023-07-17-161032-000"))),
            ("-v2023-07-17-161032-000", Some(("", "-v2023-07-17-161032-000"))),
            ("a-v2000-02-29-000000-000", Some(("a", "-v2000-02-29-000000-000"))),
            ("a-v1900-02-29-000000-000", None),
            ("a-v2001-02-30-000000-000", None),
            ("a-v2001-13-01-000000-000", None),
            ("a-v2001-12-01-240000-000", None),
            ("a-v2001-12-01-236000-000", None),
            ("a-v2001-12-01-235960-000", None),
            ("a-v2001-12-01-235959-999", Some(("a", "-v2001-12-01-235959-999"))),
            ("a-v2001-02-03-040506-123x", None),
            ("a-v2001-02-03-040506-123.x.y", None),
            ("a-v2001-02-03-040506-12.txt", None),
            (".hidden-v2001-02-03-040506-123", Some((".hidden", "-v2001-02-03-040506-123"))),
            ("plain.txt", None),
            ("é-v2001-02-03-040506-123", Some(("é", "-v2001-02-03-040506-123"))),
        ];
        for (name, want) in cases {
            let got = remove(name);
            assert_eq!(got.as_ref().map(|(a, b)| (a.as_str(), *b)), *want, "{name}");
            if let Some((base, version)) = got {
                assert_eq!(add(&base, version), *name);
            }
        }
    }
}
