//! The key-check blob: a right password passes, a wrong one is `WrongPassword`, garbage is a format error.

use s32s3_crypt::{Cipher, Error};

#[test]
fn key_check_tells_right_from_wrong_password() {
    let right = Cipher::new("correct horse", "battery staple").unwrap();
    let wrong_password = Cipher::new("correct hose", "battery staple").unwrap();
    let wrong_salt = Cipher::new("correct horse", "").unwrap();
    let blob = right.key_check_blob().unwrap();
    assert_ne!(blob, right.key_check_blob().unwrap(), "random nonce per blob");
    right.verify_key_check(&blob).unwrap();
    assert_eq!(wrong_password.verify_key_check(&blob), Err(Error::WrongPassword));
    assert_eq!(wrong_salt.verify_key_check(&blob), Err(Error::WrongPassword));
    assert_eq!(right.verify_key_check(&blob[..10]), Err(Error::TooShort { len: 10 }));
    assert_eq!(
        right.verify_key_check(b"RCLONE\0\x01 and some more bytes to be long enough"),
        Err(Error::BadMagic)
    );
    // Another object encrypted with the right key is not a key-check blob.
    let other = right.encrypt(&s32s3_crypt::Nonce::from_bytes([0; 24]), b"something else");
    assert_eq!(right.verify_key_check(&other), Err(Error::WrongPassword));
    assert!(Error::WrongPassword.to_string().contains("wrong password"));
}
