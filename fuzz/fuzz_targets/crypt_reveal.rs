#![no_main]
//! rclone's `reveal` on arbitrary text: never a panic; whatever reveals obscures back to itself.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Ok(plain) = s32s3_crypt::reveal(text) {
        let iv: [u8; 16] = std::array::from_fn(|i| input.get(i).copied().unwrap_or(0));
        assert_eq!(s32s3_crypt::reveal(&s32s3_crypt::obscure_with_iv(&plain, &iv)).unwrap(), plain);
    }
});
