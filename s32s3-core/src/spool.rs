//! JSON Lines spool files: bounded memory for sequences of any length (listings, manifest entries,
//! deletions), readable again as often as needed.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

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
}
