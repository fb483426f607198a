//! qntm's base32768 as rclone uses it (`github.com/Max-Sum/base32768`, `SafeEncoding`).
//!
//! 15 bits per UTF-16 code unit, big-endian; a final group of at most 7 bits becomes a "7-bit" character,
//! and both kinds of final group are padded on the right with 1 bits. Decoding mirrors the Go decoder
//! exactly, including its leniency: a 7-bit character ends the input (anything after it is ignored) and
//! pad bits are not checked.

/// Inclusive code-point ranges whose multiples of 32 are the 1024 block starts of 15-bit characters.
const RANGES_15: &[(u16, u16)] = &[
    (0x04A0, 0x04BF),
    (0x0500, 0x051F),
    (0x0680, 0x06BF),
    (0x0760, 0x079F),
    (0x07C0, 0x07DF),
    (0x1000, 0x101F),
    (0x10A0, 0x10BF),
    (0x1100, 0x115F),
    (0x1180, 0x119F),
    (0x11E0, 0x123F),
    (0x1260, 0x127F),
    (0x12E0, 0x12FF),
    (0x1320, 0x133F),
    (0x13A0, 0x13DF),
    (0x1420, 0x165F),
    (0x16A0, 0x16DF),
    (0x1780, 0x179F),
    (0x1820, 0x185F),
    (0x18C0, 0x18DF),
    (0x1980, 0x199F),
    (0x19E0, 0x19FF),
    (0x1A20, 0x1A3F),
    (0x1BC0, 0x1BDF),
    (0x1C00, 0x1C1F),
    (0x1D00, 0x1D1F),
    (0x21E0, 0x21FF),
    (0x22C0, 0x22DF),
    (0x2340, 0x23DF),
    (0x2400, 0x241F),
    (0x2500, 0x275F),
    (0x2780, 0x27BF),
    (0x2800, 0x297F),
    (0x29A0, 0x29BF),
    (0x2A20, 0x2A5F),
    (0x2A80, 0x2ABF),
    (0x2AE0, 0x2B5F),
    (0x2C00, 0x2C1F),
    (0x2C80, 0x2CDF),
    (0x2D00, 0x2D1F),
    (0x2D40, 0x2D5F),
    (0x2EA0, 0x2EDF),
    (0x31C0, 0x31DF),
    (0x3400, 0x4D9F),
    (0x4DC0, 0x9FBF),
    (0xA000, 0xA47F),
    (0xA4A0, 0xA4BF),
    (0xA500, 0xA5FF),
    (0xA640, 0xA65F),
    (0xA6A0, 0xA6DF),
    (0xA700, 0xA75F),
    (0xA780, 0xA79F),
    (0xA840, 0xA85F),
];

/// Block starts of the four 7-bit blocks.
const BLOCKS_7: [u16; 4] = [0x0180, 0x0240, 0x0260, 0x0280];

/// First 15-bit block start: every alphabet character below it is a 7-bit (final) character.
const SPLITTER: u16 = 0x04A0;

const fn build_blocks_15() -> [u16; 1024] {
    let mut out = [0u16; 1024];
    let mut n = 0;
    let mut r = 0;
    while r < RANGES_15.len() {
        let (start, end) = RANGES_15[r];
        let mut c = start;
        while c <= end {
            out[n] = c;
            n += 1;
            c += 32;
        }
        r += 1;
    }
    assert!(n == 1024, "base32768 alphabet must have 1024 15-bit blocks");
    out
}

/// Block start of each 15-bit value's upper 10 bits.
const BLOCKS_15: [u16; 1024] = build_blocks_15();

/// `DECODE[c >> 5]`: `0xFFFF` for a character outside the alphabet, else the block index.
const fn build_decode() -> [u16; 2048] {
    let mut out = [0xFFFFu16; 2048];
    let mut i = 0;
    while i < 1024 {
        out[(BLOCKS_15[i] >> 5) as usize] = i as u16;
        i += 1;
    }
    let mut i = 0;
    while i < 4 {
        out[(BLOCKS_7[i] >> 5) as usize] = i as u16;
        i += 1;
    }
    out
}

const DECODE: [u16; 2048] = build_decode();

fn push_unit(out: &mut String, unit: u16) {
    // Every block start lies outside the surrogate range, so each unit is a scalar value.
    out.push(char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER));
}

/// Encodes `src` as base32768 text.
pub(crate) fn encode(src: &[u8]) -> String {
    let mut out = String::with_capacity((8 * src.len()).div_ceil(15) * 3);
    let mut left: u16 = 0;
    let mut leftn: u32 = 0;
    let mut i = 0;
    while i < src.len() {
        let mut chunk = left << (15 - leftn);
        chunk |= u16::from(src[i]) << (7 - leftn);
        if leftn < 7 && i + 1 < src.len() {
            chunk |= u16::from(src[i + 1]) >> (1 + leftn);
            left = u16::from(src[i + 1]) & ((1 << (1 + leftn)) - 1);
            leftn += 1;
            i += 2;
        } else {
            chunk |= (1 << (7 - leftn)) - 1;
            left = 0;
            leftn = 0;
            i += 1;
        }
        let v = chunk & 0x7FFF;
        push_unit(&mut out, BLOCKS_15[usize::from(v >> 5)] | (v & 31));
    }
    if leftn > 0 {
        let v = ((left << (7 - leftn)) | ((1 << (7 - leftn)) - 1)) & 0x7F;
        push_unit(&mut out, BLOCKS_7[usize::from(v >> 5)] | (v & 31));
    }
    out
}

/// Decodes base32768 text; `None` if a character is not in the alphabet.
pub(crate) fn decode(src: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(src.len());
    let mut left: u8 = 0;
    let mut leftn: u32 = 0;
    for c in src.chars() {
        let unit = u16::try_from(u32::from(c)).ok()?;
        let block = DECODE[usize::from(unit >> 5)];
        if block == 0xFFFF {
            return None;
        }
        let d = (block << 5) | (unit & 31);
        if unit < SPLITTER {
            // A 7-bit character: the last one; Go ignores whatever follows.
            if leftn > 0 {
                out.push((left << (8 - leftn)) | (d >> (leftn - 1)) as u8);
            }
            return Some(out);
        }
        if leftn > 0 {
            out.push((left << (8 - leftn)) | (d >> (7 + leftn)) as u8);
            out.push((d >> (leftn - 1)) as u8);
            left = (d as u8) & ((1u8 << (leftn - 1)).wrapping_sub(1));
            leftn -= 1;
        } else {
            out.push((d >> 7) as u8);
            left = (d as u8) & 0x7F;
            leftn = 7;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn rclone_plain_vectors() {
        assert_eq!(encode(b"1"), "㼿");
        assert_eq!(encode(b"1234567890123456"), "㻙ⲍ⍆觓栩朤諆媕䆿");
        assert_eq!(decode("㼿").unwrap(), b"1");
        assert_eq!(decode("㻙ⲍ⍆觓栩朤諆媕䆿").unwrap(), b"1234567890123456");
    }

    #[test]
    fn round_trips_every_short_length() {
        for len in 0usize..=64 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = encode(&data);
            assert_eq!(enc.chars().count(), (8 * len).div_ceil(15), "len {len}");
            assert_eq!(decode(&enc).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn rejects_characters_outside_the_alphabet() {
        assert!(decode("a").is_none());
        assert!(decode("😀").is_none());
        assert!(decode("\u{4A0}\u{D7FF}").is_none());
    }
}
