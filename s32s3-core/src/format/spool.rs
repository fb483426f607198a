//! JSON Lines spool files: bounded memory for sequences of any length (listings, manifest entries,
//! deletions), readable again as often as needed; and [`ExternalSort`], which sorts sequences of any
//! length on top of them.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// An append-only sequence of `T` in a temporary file (deleted when dropped).
#[derive(Debug)]
pub struct Spool<T> {
    out: BufWriter<File>,
    len: u64,
    // A reader moved the shared file position; the next push must seek back to the end first.
    rewound: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Spool<T> {
    /// An empty spool in a new temporary file in `dir`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created.
    pub fn new(dir: &Path) -> Result<Self> {
        let file = tempfile::tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        Ok(Self {
            out: BufWriter::with_capacity(128 << 10, file),
            len: 0,
            rewound: false,
            _item: PhantomData,
        })
    }

    /// Appends one item.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn push(&mut self, item: &T) -> Result<()> {
        if self.rewound {
            self.out.seek(SeekFrom::End(0)).map_err(|e| Error::io("writing a spool file", e))?;
            self.rewound = false;
        }
        serde_json::to_writer(&mut self.out, item)
            .map_err(|e| Error::io("writing a spool file", e.into()))?;
        self.out.write_all(b"\n").map_err(|e| Error::io("writing a spool file", e))?;
        self.len += 1;
        Ok(())
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

    /// Reads the items from the start. Pushing while a reader is alive is not supported (they share the
    /// file position); the borrow enforces it.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be flushed or rewound.
    pub fn reader(&mut self) -> Result<SpoolReader<'_, T>> {
        self.out.flush().map_err(|e| Error::io("writing a spool file", e))?;
        let mut file = self.out.get_ref().try_clone().map_err(|e| Error::io("reading a spool file", e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io("reading a spool file", e))?;
        self.rewound = true;
        Ok(SpoolReader {
            input: BufReader::with_capacity(128 << 10, file),
            line: String::new(),
            remaining: self.len,
            spool: PhantomData,
        })
    }
}

impl<T> Spool<T> {
    /// The spool's raw bytes (JSON Lines) from the start, e.g. to compress them.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be flushed or rewound.
    pub fn raw(&mut self) -> Result<impl std::io::Read + use<'_, T>> {
        self.out.flush().map_err(|e| Error::io("writing a spool file", e))?;
        let mut file = self.out.get_ref().try_clone().map_err(|e| Error::io("reading a spool file", e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io("reading a spool file", e))?;
        self.rewound = true;
        Ok(BufReader::with_capacity(256 << 10, file))
    }
}

/// Reads a [`Spool`] from the start.
#[derive(Debug)]
pub struct SpoolReader<'a, T> {
    input: BufReader<File>,
    line: String,
    remaining: u64,
    spool: PhantomData<&'a mut Spool<T>>,
}

impl<T: DeserializeOwned> Iterator for SpoolReader<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.line.clear();
        match self.input.read_line(&mut self.line) {
            Ok(0) => Some(Err(Error::io("reading a spool file", std::io::ErrorKind::UnexpectedEof.into()))),
            Ok(_) => Some(
                serde_json::from_str(&self.line).map_err(|e| Error::io("reading a spool file", e.into())),
            ),
            Err(e) => Some(Err(Error::io("reading a spool file", e))),
        }
    }
}

/// Items in any order in; out in the byte order of a string key, as often as needed, with memory bounded
/// however many there are: up to `run_len` items are sorted in memory, beyond that sorted runs spill to
/// spool files and are merged. The sort is stable; of items with equal keys only the first pushed is kept,
/// unless [`ExternalSort::keeping_duplicates`].
#[derive(Debug)]
pub struct ExternalSort<T> {
    dir: std::path::PathBuf,
    buffer: Vec<T>,
    runs: Vec<Spool<T>>,
    run_len: usize,
    key: fn(&T) -> &str,
    duplicates: bool,
}

impl<T: Serialize + DeserializeOwned> ExternalSort<T> {
    /// A sorter by `key`, spilling into `dir` after `run_len` items.
    #[must_use]
    pub fn new(dir: &Path, run_len: usize, key: fn(&T) -> &str) -> Self {
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
        let mut run = Spool::new(&self.dir)?;
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
    pub fn finish(mut self) -> Result<SortedItems<T>> {
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
pub struct SortedItems<T> {
    memory: Vec<T>,
    runs: Vec<Spool<T>>,
    key: fn(&T) -> &str,
    duplicates: bool,
}

impl<T: Serialize + DeserializeOwned + Clone> SortedItems<T> {
    /// The items in key order: each key once (the first pushed), or every item when duplicates are kept.
    ///
    /// # Errors
    /// [`Error::Io`] when a spilled run cannot be read.
    #[allow(clippy::iter_not_returning_iterator)] // re-reading spilled runs can fail before iteration starts
    pub fn iter(&mut self) -> Result<SortedItemsIter<'_, T>> {
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
enum Source<'a, T> {
    Memory(std::slice::Iter<'a, T>),
    /// Each run's reader and its next item; the heap orders the heads by key (the earliest run on ties).
    Merge {
        readers: Vec<SpoolReader<'a, T>>,
        heads: Vec<Option<T>>,
        heap: std::collections::BinaryHeap<std::cmp::Reverse<(String, usize)>>,
    },
}

/// Items of a [`SortedItems`] in key order.
#[derive(Debug)]
pub struct SortedItemsIter<'a, T> {
    source: Source<'a, T>,
    last: Option<String>,
    key: fn(&T) -> &str,
    duplicates: bool,
}

impl<T: DeserializeOwned + Clone> SortedItemsIter<'_, T> {
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

impl<T: DeserializeOwned + Clone> Iterator for SortedItemsIter<'_, T> {
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
                    self.last = Some(key.to_owned());
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
