//! Spool files: bounded memory for sequences of any length (listings, manifest entries, deletions),
//! readable again as often as needed; and [`ExternalSort`], which sorts sequences of any length on top of
//! them.
//!
//! Items are JSON Lines ([`Json`], what manifests are made of) unless their type is a [`Record`], which the
//! hot paths use ([`Binary`]): a source listing and a previous snapshot's entries are read in every pass
//! of an incremental backup, and decoding a record costs a fraction of parsing JSON.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How a spool writes its items and reads them back.
pub trait Codec<T> {
    /// Appends `item`; `scratch` is a buffer kept from call to call.
    ///
    /// # Errors
    /// The write failed (or the item does not serialize).
    fn write(item: &T, out: &mut impl Write, scratch: &mut Vec<u8>) -> io::Result<()>;

    /// The next item, or `None` at the end; `scratch` is a buffer kept from call to call.
    ///
    /// # Errors
    /// The read failed, or what was read is not an item.
    fn read(input: &mut impl BufRead, scratch: &mut Vec<u8>) -> io::Result<Option<T>>;
}

/// One item per line, as JSON.
#[derive(Debug)]
pub struct Json;

impl<T: Serialize + DeserializeOwned> Codec<T> for Json {
    fn write(item: &T, out: &mut impl Write, _: &mut Vec<u8>) -> io::Result<()> {
        serde_json::to_writer(&mut *out, item)?;
        out.write_all(b"\n")
    }

    fn read(input: &mut impl BufRead, scratch: &mut Vec<u8>) -> io::Result<Option<T>> {
        scratch.clear();
        if input.read_until(b'\n', scratch)? == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(scratch)?))
    }
}

/// A type stored as a compact binary record ([`Binary`]): its fields one after the other, strings with
/// their length.
pub trait Record: Sized {
    /// Appends the record's bytes.
    fn encode(&self, out: &mut RecordWriter<'_>);

    /// The item back from what [`Record::encode`] wrote; `None` if it is not one.
    fn decode(input: &mut RecordReader<'_>) -> Option<Self>;
}

/// Each item as its length and its [`Record`] bytes.
#[derive(Debug)]
pub struct Binary;

impl<T: Record> Codec<T> for Binary {
    fn write(item: &T, out: &mut impl Write, scratch: &mut Vec<u8>) -> io::Result<()> {
        scratch.clear();
        item.encode(&mut RecordWriter(scratch));
        let len = u32::try_from(scratch.len()).map_err(|_| io::Error::other("a spool record over 4 GiB"))?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(scratch)
    }

    fn read(input: &mut impl BufRead, scratch: &mut Vec<u8>) -> io::Result<Option<T>> {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        scratch.clear();
        scratch.resize(u32::from_le_bytes(len) as usize, 0);
        input.read_exact(scratch)?;
        let mut reader = RecordReader(scratch);
        T::decode(&mut reader)
            .filter(|_| reader.0.is_empty())
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a spool record"))
    }
}

/// Where a [`Record`] writes its fields.
#[derive(Debug)]
pub struct RecordWriter<'a>(&'a mut Vec<u8>);

impl RecordWriter<'_> {
    /// A number.
    pub fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    /// A string (its length first).
    pub fn str(&mut self, value: &str) {
        self.u64(value.len() as u64);
        self.0.extend_from_slice(value.as_bytes());
    }

    /// An optional string.
    pub fn opt_str(&mut self, value: Option<&str>) {
        match value {
            Some(value) => {
                self.0.push(1);
                self.str(value);
            }
            None => self.0.push(0),
        }
    }
}

/// What a [`Record`] reads its fields from.
#[derive(Debug)]
pub struct RecordReader<'a>(&'a [u8]);

impl RecordReader<'_> {
    /// A number.
    pub fn u64(&mut self) -> Option<u64> {
        let (bytes, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*bytes))
    }

    /// A string.
    pub fn str(&mut self) -> Option<String> {
        let len = usize::try_from(self.u64()?).ok()?;
        let bytes = self.0.get(..len)?;
        self.0 = &self.0[len..];
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }

    /// An optional string.
    pub fn opt_str(&mut self) -> Option<Option<String>> {
        let (&flag, rest) = self.0.split_first()?;
        self.0 = rest;
        match flag {
            0 => Some(None),
            1 => self.str().map(Some),
            _ => None,
        }
    }
}

/// An append-only sequence of `T` in a temporary file (deleted when dropped), written with `C`.
#[derive(Debug)]
pub struct Spool<T, C = Json> {
    out: BufWriter<File>,
    scratch: Vec<u8>,
    len: u64,
    // A reader moved the shared file position; the next push must seek back to the end first.
    rewound: bool,
    _item: PhantomData<fn() -> (T, C)>,
}

impl<T: Serialize + DeserializeOwned> Spool<T, Json> {
    /// An empty spool of JSON Lines in a new temporary file in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created.
    pub fn new(dir: &Path) -> Result<Self> {
        Self::create(dir)
    }
}

impl<T: Record> Spool<T, Binary> {
    /// An empty spool of binary records in a new temporary file in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created.
    pub fn records(dir: &Path) -> Result<Self> {
        Self::create(dir)
    }
}

impl<T, C> Spool<T, C> {
    fn create(dir: &Path) -> Result<Self> {
        let file = tempfile::tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        Ok(Self {
            out: BufWriter::with_capacity(128 << 10, file),
            scratch: Vec::new(),
            len: 0,
            rewound: false,
            _item: PhantomData,
        })
    }

    fn at_end(&mut self) -> Result<&mut BufWriter<File>> {
        if self.rewound {
            self.out.seek(SeekFrom::End(0)).map_err(|e| Error::io("writing a spool file", e))?;
            self.rewound = false;
        }
        Ok(&mut self.out)
    }

    /// The file rewound to its start, after what was pushed.
    fn rewind(&mut self) -> Result<File> {
        self.out.flush().map_err(|e| Error::io("writing a spool file", e))?;
        let mut file = self.out.get_ref().try_clone().map_err(|e| Error::io("reading a spool file", e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io("reading a spool file", e))?;
        self.rewound = true;
        Ok(file)
    }

    /// Items pushed.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was pushed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T, C: Codec<T>> Spool<T, C> {
    /// Appends one item.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn push(&mut self, item: &T) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let written = C::write(item, self.at_end()?, &mut scratch);
        self.scratch = scratch;
        written.map_err(|e| Error::io("writing a spool file", e))?;
        self.len += 1;
        Ok(())
    }

    /// Reads the items from the start. Pushing while a reader is alive is not supported (they share the
    /// file position); the borrow enforces it.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be flushed or rewound.
    pub fn reader(&mut self) -> Result<SpoolReader<'_, T, C>> {
        let file = self.rewind()?;
        Ok(SpoolReader {
            input: BufReader::with_capacity(128 << 10, file),
            scratch: Vec::new(),
            remaining: self.len,
            spool: PhantomData,
        })
    }
}

impl<T> Spool<T, Json> {
    /// Appends one item given as its JSON line (no newline), as [`Spool::push`] would have written it: for
    /// items read as JSON and written out unchanged, with no parse and no serialization.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn push_line(&mut self, line: &str) -> Result<()> {
        debug_assert!(!line.contains('\n'), "one line per item");
        let out = self.at_end()?;
        out.write_all(line.as_bytes()).map_err(|e| Error::io("writing a spool file", e))?;
        out.write_all(b"\n").map_err(|e| Error::io("writing a spool file", e))?;
        self.len += 1;
        Ok(())
    }

    /// The spool's raw bytes (JSON Lines) from the start, e.g. to compress them.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be flushed or rewound.
    pub fn raw(&mut self) -> Result<impl Read + use<'_, T>> {
        Ok(BufReader::with_capacity(256 << 10, self.rewind()?))
    }
}

/// Reads a [`Spool`] from the start.
#[derive(Debug)]
pub struct SpoolReader<'a, T, C = Json> {
    input: BufReader<File>,
    scratch: Vec<u8>,
    remaining: u64,
    spool: PhantomData<&'a mut Spool<T, C>>,
}

impl<T, C: Codec<T>> Iterator for SpoolReader<'_, T, C> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match C::read(&mut self.input, &mut self.scratch) {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => Some(Err(Error::io("reading a spool file", io::ErrorKind::UnexpectedEof.into()))),
            Err(e) => Some(Err(Error::io("reading a spool file", e))),
        }
    }
}

/// Items in any order in; out in the byte order of a string key, as often as needed, with memory bounded
/// however many there are: up to `run_len` items are sorted in memory, beyond that sorted runs spill to
/// spool files (written with `C`) and are merged. The sort is stable; of items with equal keys only the
/// first pushed is kept, unless [`ExternalSort::keeping_duplicates`].
#[derive(Debug)]
pub struct ExternalSort<T, C = Json> {
    dir: std::path::PathBuf,
    buffer: Vec<T>,
    runs: Vec<Spool<T, C>>,
    run_len: usize,
    key: fn(&T) -> &str,
    duplicates: bool,
}

impl<T: Serialize + DeserializeOwned> ExternalSort<T, Json> {
    /// A sorter by `key`, spilling JSON Lines into `dir` after `run_len` items.
    #[must_use]
    pub fn new(dir: &Path, run_len: usize, key: fn(&T) -> &str) -> Self {
        Self::create(dir, run_len, key)
    }
}

impl<T: Record> ExternalSort<T, Binary> {
    /// A sorter by `key`, spilling binary records into `dir` after `run_len` items.
    #[must_use]
    pub fn records(dir: &Path, run_len: usize, key: fn(&T) -> &str) -> Self {
        Self::create(dir, run_len, key)
    }
}

impl<T, C: Codec<T>> ExternalSort<T, C> {
    fn create(dir: &Path, run_len: usize, key: fn(&T) -> &str) -> Self {
        Self {
            dir: dir.to_owned(),
            buffer: Vec::new(),
            runs: Vec::new(),
            run_len: run_len.max(1),
            key,
            duplicates: false,
        }
    }

    /// Keeps every item of equal keys, in the order they were pushed (e.g. all versions of a key).
    #[must_use]
    pub fn keeping_duplicates(mut self) -> Self {
        self.duplicates = true;
        self
    }

    /// Adds one item.
    ///
    /// # Errors
    /// [`Error::Io`] when a run cannot be spilled.
    pub fn push(&mut self, item: T) -> Result<()> {
        self.buffer.push(item);
        if self.buffer.len() >= self.run_len {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        let key = self.key;
        // Stable: of equal keys the first pushed stays first.
        self.buffer.sort_by(|a, b| key(a).cmp(key(b)));
        let mut run = Spool::create(&self.dir)?;
        for item in self.buffer.drain(..) {
            run.push(&item)?;
        }
        self.runs.push(run);
        Ok(())
    }

    /// Ends collection: the items can now be read in order.
    ///
    /// # Errors
    /// [`Error::Io`] when the last run cannot be spilled.
    pub fn finish(mut self) -> Result<SortedItems<T, C>> {
        if !self.runs.is_empty() && !self.buffer.is_empty() {
            self.spill()?;
        }
        let key = self.key;
        self.buffer.sort_by(|a, b| key(a).cmp(key(b)));
        Ok(SortedItems { memory: self.buffer, runs: self.runs, key, duplicates: self.duplicates })
    }
}

/// A finished [`ExternalSort`].
#[derive(Debug)]
pub struct SortedItems<T, C = Json> {
    memory: Vec<T>,
    runs: Vec<Spool<T, C>>,
    key: fn(&T) -> &str,
    duplicates: bool,
}

impl<T: Clone, C: Codec<T>> SortedItems<T, C> {
    /// The items in key order: each key once (the first pushed), or every item when duplicates are kept.
    ///
    /// # Errors
    /// [`Error::Io`] when a spilled run cannot be read.
    #[allow(clippy::iter_not_returning_iterator)] // re-reading spilled runs can fail before iteration starts
    pub fn iter(&mut self) -> Result<SortedItemsIter<'_, T, C>> {
        let key = self.key;
        let source = if self.runs.is_empty() {
            Source::Memory(self.memory.iter())
        } else {
            let mut readers = Vec::with_capacity(self.runs.len());
            let mut heads = Vec::with_capacity(self.runs.len());
            let mut heap = std::collections::BinaryHeap::new();
            for (i, run) in self.runs.iter_mut().enumerate() {
                let mut reader = run.reader()?;
                let head = reader.next().transpose()?;
                if let Some(head) = &head {
                    heap.push(std::cmp::Reverse((key(head).to_owned(), i)));
                }
                heads.push(head);
                readers.push(reader);
            }
            Source::Merge { readers, heads, heap }
        };
        Ok(SortedItemsIter { source, last: None, key, duplicates: self.duplicates })
    }
}

#[derive(Debug)]
enum Source<'a, T, C> {
    Memory(std::slice::Iter<'a, T>),
    /// Each run's reader and its next item; the heap orders the heads by key (the earliest run on ties).
    Merge {
        readers: Vec<SpoolReader<'a, T, C>>,
        heads: Vec<Option<T>>,
        heap: std::collections::BinaryHeap<std::cmp::Reverse<(String, usize)>>,
    },
}

/// Items of a [`SortedItems`] in key order.
#[derive(Debug)]
pub struct SortedItemsIter<'a, T, C = Json> {
    source: Source<'a, T, C>,
    last: Option<String>,
    key: fn(&T) -> &str,
    duplicates: bool,
}

impl<T: Clone, C: Codec<T>> SortedItemsIter<'_, T, C> {
    fn next_raw(&mut self) -> Result<Option<T>> {
        let key = self.key;
        match &mut self.source {
            Source::Memory(items) => Ok(items.next().cloned()),
            Source::Merge { readers, heads, heap } => {
                let Some(std::cmp::Reverse((_, i))) = heap.pop() else { return Ok(None) };
                let next = readers[i].next().transpose()?;
                if let Some(next) = &next {
                    heap.push(std::cmp::Reverse((key(next).to_owned(), i)));
                }
                Ok(std::mem::replace(&mut heads[i], next))
            }
        }
    }
}

impl<T: Clone, C: Codec<T>> Iterator for SortedItemsIter<'_, T, C> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_raw() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some(item)) if self.duplicates => return Some(Ok(item)),
                Ok(Some(item)) => {
                    let key = (self.key)(&item);
                    if self.last.as_deref() == Some(key) {
                        continue;
                    }
                    match &mut self.last {
                        Some(last) => key.clone_into(last),
                        None => self.last = Some(key.to_owned()),
                    }
                    return Some(Ok(item));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_repeatedly_and_after_more_pushes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::<(String, u64)>::new(dir.path()).unwrap();
        spool.push(&("a\nb".into(), 1)).unwrap();
        spool.push(&("ü".into(), 2)).unwrap();
        for _ in 0..2 {
            let items: Vec<_> = spool.reader().unwrap().map(Result::unwrap).collect();
            assert_eq!(items, vec![("a\nb".to_owned(), 1), ("ü".to_owned(), 2)]);
        }
        // A reader that stops early must not make the next push overwrite items.
        assert_eq!(spool.reader().unwrap().next().unwrap().unwrap().1, 1);
        spool.push(&("c".into(), 3)).unwrap();
        let items: Vec<_> = spool.reader().unwrap().map(|r| r.unwrap().1).collect();
        assert_eq!(items, vec![1, 2, 3]);
        assert_eq!(spool.len(), 3);
    }

    #[test]
    fn duplicates_are_kept_in_push_order_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let pushed = [("b", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5), ("b", 6), ("a", 7)];
        for run_len in [2, 3, 100] {
            let mut sort = ExternalSort::new(dir.path(), run_len, |i: &(String, u32)| i.0.as_str());
            let mut kept =
                ExternalSort::new(dir.path(), run_len, |i: &(String, u32)| i.0.as_str()).keeping_duplicates();
            for (k, v) in pushed {
                sort.push((k.to_owned(), v)).unwrap();
                kept.push((k.to_owned(), v)).unwrap();
            }
            let values = |s: ExternalSort<(String, u32)>| -> Vec<u32> {
                s.finish().unwrap().iter().unwrap().map(|i| i.unwrap().1).collect()
            };
            assert_eq!(values(sort), [2, 1, 5], "run length {run_len}");
            assert_eq!(values(kept), [2, 4, 7, 1, 3, 6, 5], "run length {run_len}");
        }
    }
}
