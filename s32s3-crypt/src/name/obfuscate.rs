//! rclone's `obfuscate` name mode: a weak, reversible per-character rotation (cipher.go
//! `obfuscateSegment`/`deobfuscateSegment`), ported rule by rule, including what Go does with odd input
//! when deobfuscating (a signed or huge rotation number, runes that leave their range).

const QUOTE: char = '!';

/// Go's `WriteRune`: an invalid code point becomes U+FFFD.
fn push_code(out: &mut String, code: i64) {
    let c = u32::try_from(code).ok().and_then(char::from_u32).unwrap_or(char::REPLACEMENT_CHARACTER);
    out.push(c);
}

/// Obfuscates one non-empty segment; `key_sum` is the sum of the 32 name-key bytes.
pub(crate) fn obfuscate(plain: &str, key_sum: i64) -> String {
    if plain.is_empty() {
        return String::new();
    }
    let mut dir: i64 = plain.chars().map(|c| i64::from(u32::from(c))).sum::<i64>() % 256;
    let mut out = String::with_capacity(plain.len() + 8);
    out.push_str(&dir.to_string());
    out.push('.');
    dir += key_sum;
    for c in plain.chars() {
        let r = i64::from(u32::from(c));
        match c {
            QUOTE => out.push_str("!!"),
            '0'..='9' => push_code(&mut out, i64::from(b'0') + (r - i64::from(b'0') + dir % 9 + 1) % 10),
            'A'..='Z' | 'a'..='z' => {
                let mut pos = r - i64::from(b'A');
                if pos >= 26 {
                    pos -= 6;
                }
                pos = (pos + dir % 25 + 1) % 52;
                if pos >= 26 {
                    pos += 6;
                }
                push_code(&mut out, i64::from(b'A') + pos);
            }
            '\u{A0}'..='\u{FF}' => push_code(&mut out, 0xA0 + (r - 0xA0 + dir % 95 + 1) % 96),
            _ if r >= 0x100 => {
                let base = r - r % 256;
                let new = base + (r - base + dir % 127 + 1) % 256;
                if let Some(n) = u32::try_from(new).ok().and_then(char::from_u32) {
                    out.push(n);
                } else {
                    out.push(QUOTE);
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Reverses [`obfuscate`]; `None` when the `N.` prefix is missing or `N` is not a number.
pub(crate) fn deobfuscate(cipher: &str, key_sum: i64) -> Option<String> {
    if cipher.is_empty() {
        return Some(String::new());
    }
    let (num, rest) = cipher.split_once('.')?;
    if num == "!" {
        return Some(rest.to_owned());
    }
    // Go's strconv.Atoi: optional sign, ASCII digits, must fit in 64 bits.
    let mut dir: i64 = num.parse().ok()?;
    dir = dir.wrapping_add(key_sum);
    let mut out = String::with_capacity(rest.len());
    let mut in_quote = false;
    for c in rest.chars() {
        let r = i64::from(u32::from(c));
        if in_quote {
            out.push(c);
            in_quote = false;
            continue;
        }
        match c {
            QUOTE => in_quote = true,
            '0'..='9' => {
                let mut new = r - (dir % 9 + 1);
                if new < i64::from(b'0') {
                    new += 10;
                }
                push_code(&mut out, new);
            }
            'A'..='Z' | 'a'..='z' => {
                let mut pos = r - i64::from(b'A');
                if pos >= 26 {
                    pos -= 6;
                }
                pos -= dir % 25 + 1;
                if pos < 0 {
                    pos += 52;
                }
                if pos >= 26 {
                    pos += 6;
                }
                push_code(&mut out, i64::from(b'A') + pos);
            }
            '\u{A0}'..='\u{FF}' => {
                let mut new = r - (dir % 95 + 1);
                if new < 0xA0 {
                    new += 96;
                }
                push_code(&mut out, new);
            }
            _ if r >= 0x100 => {
                let base = r - r % 256;
                let mut new = r - (dir % 127 + 1);
                if new < base {
                    new += 256;
                }
                push_code(&mut out, new);
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{deobfuscate, obfuscate};

    #[test]
    fn zero_key_vectors_from_the_spec() {
        // Set Z (all-zero name key): `1/12/123/!hello` -> `49.6/99.23/150.890/53.!!lipps`.
        for (plain, want) in [("1", "49.6"), ("12", "99.23"), ("123", "150.890"), ("!hello", "53.!!lipps")] {
            assert_eq!(obfuscate(plain, 0), want);
            assert_eq!(deobfuscate(want, 0).unwrap(), plain);
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        for s in ["-9999999999.abc", "9223372036854775807.zZ9\u{FF}\u{10FFFF}", "+1.!", "x", "1.", "!.raw"] {
            let _ = deobfuscate(s, 8000);
        }
        assert_eq!(deobfuscate("!.raw", 1).unwrap(), "raw");
        assert!(deobfuscate("abc", 1).is_none());
        assert!(deobfuscate("x.abc", 1).is_none());
    }
}
