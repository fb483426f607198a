//! Object bodies as streams, so that object data moves through s32s3 in frames and no object, and no
//! part of one, has to be held whole:
//!
//! - [`RangeReader`] reads bytes `[start, end)` of one object (a pinned version, or the current one as
//!   long as its ETag holds), in order and each byte exactly once. When a body breaks off it resumes with
//!   a ranged GET from the first byte not yet delivered, so a consumer that hashes or decrypts as it reads
//!   never sees a byte twice. Failures count under the store's [`RetryPolicy`](super::RetryPolicy); a
//!   resumption that moves the read forward starts the count afresh.
//! - [`body_channel`] makes a request body of a known length that a producer feeds frame by frame (the
//!   streamed uploads of [`Store`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::retry::Retrier;
use super::{ObjectHead, ReadOptions, Store};
use crate::error::{Error, Result, S3Error, S3ErrorKind, Side};

/// A response body being read, frame by frame as the server sends it.
pub struct ObjectBody {
    pub(super) stream: aws_sdk_s3::primitives::ByteStream,
    pub(super) side: Side,
    pub(super) bucket: String,
    pub(super) key: String,
}

impl std::fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBody")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ObjectBody {
    /// The next frame; a body that broke off is a temporary error.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        match self.stream.try_next().await {
            Ok(Some(frame)) => Some(Ok(frame)),
            Ok(None) => None,
            Err(e) => Some(Err(super::s3::body_error(self.side, "GetObject", &self.bucket, &self.key, &e))),
        }
    }
}

/// Bytes `[start, end)` of one object, in order, each exactly once, resuming after broken bodies (see
/// the module documentation). Made by [`Store::read_range`].
#[derive(Debug)]
pub struct RangeReader {
    store: Store,
    bucket: String,
    key: String,
    version_id: Option<String>,
    if_match: Option<String>,
    pos: u64,
    end: u64,
    body: Option<ObjectBody>,
    head: Option<ObjectHead>,
    retrier: Retrier,
}

impl RangeReader {
    pub(super) fn new(
        store: &Store,
        bucket: &str,
        key: &str,
        read: ReadOptions<'_>,
        start: u64,
        end: u64,
    ) -> Self {
        Self {
            store: store.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: read.version_id.map(str::to_owned),
            if_match: read.if_match.map(str::to_owned),
            pos: start,
            end: end.max(start),
            body: None,
            head: None,
            retrier: store.policy().retrier(),
        }
    }

    /// The first byte not yet delivered.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The headers of the first answer (the read's first request is sent now if it was not yet).
    ///
    /// # Errors
    /// The request's final failure, classified ("not found", "precondition failed", …).
    pub async fn head(&mut self) -> Result<&ObjectHead> {
        if self.head.is_none() {
            if self.pos < self.end {
                self.open().await?;
            } else {
                let read = ReadOptions {
                    version_id: self.version_id.as_deref(),
                    if_match: self.if_match.as_deref(),
                };
                self.head = Some(self.store.head(&self.bucket, &self.key, read).await?);
            }
        }
        Ok(self.head.as_ref().expect("set above"))
    }

    /// Sends the ranged GET for `[pos, end)`, retrying temporary failures.
    async fn open(&mut self) -> Result<()> {
        loop {
            let read =
                ReadOptions { version_id: self.version_id.as_deref(), if_match: self.if_match.as_deref() };
            let range = (self.pos, self.end - 1);
            match self.store.open_read(&self.bucket, &self.key, read, Some(range)).await {
                Ok((head, body)) => {
                    self.head.get_or_insert(head);
                    self.body = Some(body);
                    return Ok(());
                }
                Err(e) if self.retrier.wait(&e).await => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next bytes (at most up to `end`), or `None` once `end` is reached.
    pub async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.pos >= self.end {
                self.body = None;
                return None;
            }
            if self.body.is_none()
                && let Err(e) = self.open().await
            {
                return Some(Err(e));
            }
            let body = self.body.as_mut().expect("opened above");
            let failure = match body.next().await {
                Some(Ok(frame)) if frame.is_empty() => continue,
                Some(Ok(mut frame)) => {
                    let room = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
                    frame.truncate(room);
                    self.pos += frame.len() as u64;
                    self.retrier.progressed();
                    return Some(Ok(frame));
                }
                Some(Err(e)) => e,
                None => Error::S3(S3Error::local(
                    self.store.side(),
                    "GetObject",
                    &self.bucket,
                    &self.key,
                    S3ErrorKind::Temporary,
                    format!("the body ended at byte {} of {}", self.pos, self.end),
                )),
            };
            self.body = None;
            if !self.retrier.wait(&failure).await {
                return Some(Err(failure));
            }
        }
    }
}

/// The producing end of a request body: frames in order, exactly as many bytes as the body's length.
/// Dropping it before that many were sent makes the request fail (nothing incomplete is stored).
pub type BodySender = mpsc::Sender<Bytes>;

/// The consuming end of a request body, handed to a streamed upload of [`Store`].
#[derive(Debug)]
pub struct BodyReceiver {
    frames: mpsc::Receiver<Bytes>,
    len: u64,
}

impl BodyReceiver {
    /// The body's length.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A request body of `len` bytes fed through a channel of `frames` frames.
#[must_use]
pub fn body_channel(len: u64, frames: usize) -> (BodySender, BodyReceiver) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    (tx, BodyReceiver { frames: rx, len })
}

/// [`BodyReceiver`] as an HTTP body: ends with an error if the producer stops short of the length or
/// sends more.
pub(super) struct ChannelBody {
    frames: mpsc::Receiver<Bytes>,
    remaining: u64,
}

impl From<BodyReceiver> for ChannelBody {
    fn from(body: BodyReceiver) -> Self {
        Self { frames: body.frames, remaining: body.len }
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.frames.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(frame)) => {
                let Some(remaining) = self.remaining.checked_sub(frame.len() as u64) else {
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "the body is longer than its length",
                    ))));
                };
                self.remaining = remaining;
                Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
            }
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(format!(
                "the body's producer stopped {} bytes short",
                self.remaining
            ))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    #[tokio::test]
    async fn a_channel_body_ends_exactly_at_its_length() {
        let (tx, rx) = body_channel(5, 2);
        let mut body = std::pin::pin!(ChannelBody::from(rx));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        tx.send(Bytes::from_static(b"de")).await.unwrap();
        let mut got = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            got.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        assert_eq!(got, b"abcde");
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_producer_that_stops_short_fails_the_body() {
        let (tx, rx) = body_channel(5, 2);
        let mut body = std::pin::pin!(ChannelBody::from(rx));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(tx);
        let first = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await.unwrap();
        assert!(first.is_ok());
        let second = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await.unwrap();
        assert!(second.unwrap_err().to_string().contains("2 bytes short"));
    }
}
