//! The tokio adapters: same bytes and errors as the `std::io` readers.
#![cfg(feature = "tokio")]

use s32s3_crypt::{
    AsyncDecryptReader, AsyncEncryptReader, CHUNK_SIZE, ChunkRange, Cipher, Error, Key, Nonce, encrypted_size,
};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

fn cipher() -> Cipher {
    Cipher::from_key(Key::from_bytes(&[9; 80]))
}

/// An async reader that returns `Pending` before every read and hands out at most 1000 bytes.
struct Slow<'a> {
    data: &'a [u8],
    ready: bool,
}

impl AsyncRead for Slow<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.ready = false;
        let n = self.data.len().min(buf.remaining()).min(1000);
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn async_round_trip_equals_sync_encryption() {
    let cipher = cipher();
    for len in [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17] {
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let nonce = Nonce::from_bytes([len as u8; 24]);
        for parallel in [false, true] {
            let mut enc = Vec::new();
            AsyncEncryptReader::with_nonce(&cipher, nonce, Slow { data: &plain, ready: false })
                .parallel(parallel)
                .read_to_end(&mut enc)
                .await
                .unwrap();
            assert_eq!(enc, cipher.encrypt(&nonce, &plain), "len {len}");
            assert_eq!(enc.len() as u64, encrypted_size(len as u64));
            let mut back = Vec::new();
            AsyncDecryptReader::new(&cipher, Slow { data: &enc, ready: false })
                .parallel(parallel)
                .expect_size(len as u64)
                .read_to_end(&mut back)
                .await
                .unwrap();
            assert_eq!(back, plain);
        }
    }
}

#[tokio::test]
async fn async_random_nonce_and_range() {
    let cipher = cipher();
    let plain: Vec<u8> = (0..200_000).map(|i| (i % 253) as u8).collect();
    let mut reader = AsyncEncryptReader::new(&cipher, &plain[..]).unwrap();
    let nonce = *reader.nonce();
    let mut enc = Vec::new();
    reader.read_to_end(&mut enc).await.unwrap();
    assert_eq!(&enc[8..32], nonce.as_bytes());
    let range = ChunkRange::new(70_000, Some(100_000));
    let from = range.underlying_offset as usize;
    let to = from + range.underlying_len.unwrap() as usize;
    let mut out = Vec::new();
    AsyncDecryptReader::for_range(&cipher, nonce, &range, &enc[from..to.min(enc.len())])
        .read_to_end(&mut out)
        .await
        .unwrap();
    assert_eq!(out, &plain[70_000..170_000]);
}

#[tokio::test]
async fn async_errors_are_typed() {
    let cipher = cipher();
    let enc = cipher.encrypt(&Nonce::from_bytes([1; 24]), &vec![5u8; 3 * CHUNK_SIZE]);
    let read = |data: Vec<u8>| {
        let cipher = cipher.clone();
        async move {
            let mut out = Vec::new();
            let err = AsyncDecryptReader::new(&cipher, &data[..]).read_to_end(&mut out).await.unwrap_err();
            (out.len(), Error::from_io(&err).cloned().unwrap())
        }
    };
    assert_eq!(read(enc[..20].to_vec()).await, (0, Error::TooShort { len: 20 }));
    let mut bad = enc.clone();
    bad[7] = 1;
    assert_eq!(read(bad).await, (0, Error::BadMagic));
    let mut flipped = enc.clone();
    flipped[32 + 2 * 65552 + 100] ^= 4;
    assert_eq!(read(flipped).await, (2 * CHUNK_SIZE, Error::Authentication { chunk: 2 }));
    assert_eq!(
        read(enc[..32 + 65552 + 10].to_vec()).await,
        (CHUNK_SIZE, Error::TruncatedChunk { chunk: 1, len: 10 })
    );
}
