//! `s32s3 crypt …`, `s32s3 obscure`, `s32s3 reveal`: inspect single backup objects and names by hand.
//!
//! Contents stream through a three-stage pipeline (a reader thread, the cipher on rayon's pool, a writer
//! thread) with a few recycled 4 MiB buffers, so reading, encrypting and writing overlap and memory stays
//! flat whatever the object's size.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use anyhow::{Context, Result, anyhow, bail};
use clap::{ArgAction, Args, Subcommand};
use s32s3_crypt::{
    CHUNK_SIZE, ChunkRange, Cipher, DecryptReader, ENCRYPTED_CHUNK_SIZE, HEADER_SIZE, NameEncoding, NameMode,
    NameOptions, Nonce,
};

use crate::exit;

/// Chunks per pipeline block: 4 MiB of plaintext, enough for every core to get several chunks.
const BLOCK_CHUNKS: usize = 64;
/// Blocks in flight between the stages (reader → cipher → writer), and so recycled buffers.
const IN_FLIGHT: usize = 3;

/// `s32s3 crypt` subcommands.
#[derive(Debug, Subcommand)]
pub enum CryptCommand {
    /// Encrypt a file (or stdin) into rclone's crypt format.
    Encrypt(ContentArgs),
    /// Decrypt an object in rclone's crypt format (or a plaintext range of it).
    Decrypt(DecryptArgs),
    /// Encrypt file (or, with --dir, directory) paths as rclone names them.
    EncodeName(NameArgs),
    /// Decrypt encrypted file (or, with --dir, directory) paths.
    DecodeName(NameArgs),
}

/// Passwords of a crypt remote.
#[derive(Args)]
pub struct PasswordArgs {
    /// The crypt password (rclone's `password`). Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "S32S3_CRYPT_PASSWORD", hide_env_values = true)]
    password: String,
    /// The salt password (rclone's `password2`); empty means rclone's default salt.
    #[arg(long, env = "S32S3_CRYPT_PASSWORD2", hide_env_values = true, default_value = "")]
    password2: String,
    /// The passwords are rclone-obscured (as in rclone.conf), not plain.
    #[arg(long)]
    obscured: bool,
}

impl fmt::Debug for PasswordArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordArgs")
            .field("password", &"<redacted>")
            .field("password2", &"<redacted>")
            .field("obscured", &self.obscured)
            .finish()
    }
}

impl PasswordArgs {
    fn cipher(&self) -> Result<Cipher> {
        let (password, password2) = if self.obscured {
            let password = s32s3_crypt::reveal(&self.password).context("revealing --password")?;
            let password2 = if self.password2.is_empty() {
                String::new()
            } else {
                s32s3_crypt::reveal(&self.password2).context("revealing --password2")?
            };
            (password, password2)
        } else {
            (self.password.clone(), self.password2.clone())
        };
        Ok(Cipher::new(password, password2)?)
    }
}

/// Input, output and threads of `encrypt`/`decrypt`.
#[derive(Debug, Args)]
pub struct ContentArgs {
    #[command(flatten)]
    passwords: PasswordArgs,
    /// Read from this file instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Threads for the cipher (default: one per core; 1 keeps everything on the calling thread).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// `decrypt` arguments.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    content: ContentArgs,
    /// Start at this plaintext byte offset (reads only the chunks needed when the input is a file).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    offset: u64,
    /// Decrypt at most this many plaintext bytes.
    #[arg(long, value_name = "BYTES")]
    count: Option<u64>,
}

/// Name-encryption options, as in rclone's config.
#[derive(Debug, Args)]
pub struct NameArgs {
    #[command(flatten)]
    passwords: PasswordArgs,
    /// rclone's `filename_encryption`: standard, obfuscate or off.
    #[arg(long, default_value = "standard", value_name = "MODE")]
    filename_encryption: NameMode,
    /// rclone's `filename_encoding` (standard mode): base32, base64 or base32768.
    #[arg(long, default_value = "base32", value_name = "ENCODING")]
    filename_encoding: NameEncoding,
    /// rclone's `directory_name_encryption`.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    directory_name_encryption: bool,
    /// rclone's `suffix` for `off` mode (`none` for no suffix).
    #[arg(long, default_value = ".bin")]
    suffix: String,
    /// The paths are directories (no suffix, no version handling on the last segment).
    #[arg(long)]
    dir: bool,
    /// Paths to transform; read one per line from stdin when none are given.
    paths: Vec<String>,
}

/// `s32s3 obscure` arguments.
#[derive(Args)]
pub struct ObscureArgs {
    /// The password to obscure; read from the first line of stdin when omitted (keeps it out of `ps`).
    // May begin with `-`: taken as the value unless it is exactly a flag (`-h`).
    #[arg(allow_hyphen_values = true)]
    password: Option<String>,
}

impl fmt::Debug for ObscureArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObscureArgs")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `s32s3 reveal` arguments.
#[derive(Args)]
pub struct RevealArgs {
    /// The obscured password (as in rclone.conf); read from the first line of stdin when omitted.
    // One in 64 begins with `-` (base64url): taken as the value, not as flags.
    #[arg(allow_hyphen_values = true)]
    obscured: Option<String>,
}

impl fmt::Debug for RevealArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevealArgs").field("obscured", &self.obscured.as_ref().map(|_| "<redacted>")).finish()
    }
}

/// Runs a `crypt` subcommand.
pub fn run(command: CryptCommand) -> Result<u8> {
    match command {
        CryptCommand::Encrypt(args) => with_threads(args.threads, || encrypt(&args)),
        CryptCommand::Decrypt(args) => with_threads(args.content.threads, || decrypt(&args)),
        CryptCommand::EncodeName(args) => names(&args, true),
        CryptCommand::DecodeName(args) => names(&args, false),
    }
}

/// Runs `obscure`.
pub fn obscure(args: &ObscureArgs) -> Result<u8> {
    let password = match &args.password {
        Some(p) => p.clone(),
        None => first_stdin_line()?,
    };
    println!("{}", s32s3_crypt::obscure(&password)?);
    Ok(exit::OK)
}

/// Runs `reveal`.
pub fn reveal(args: &RevealArgs) -> Result<u8> {
    let obscured = match &args.obscured {
        Some(p) => p.clone(),
        None => first_stdin_line()?,
    };
    println!("{}", s32s3_crypt::reveal(obscured.trim())?);
    Ok(exit::OK)
}

fn first_stdin_line() -> Result<String> {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line).context("reading stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn names(args: &NameArgs, encode: bool) -> Result<u8> {
    let mode = match &args.filename_encryption {
        NameMode::Off { .. } => NameMode::off(&args.suffix),
        other => other.clone(),
    };
    let options = NameOptions {
        mode,
        encoding: args.filename_encoding,
        directory_name_encryption: args.directory_name_encryption,
    };
    let codec = args.passwords.cipher()?.name_codec(options);
    let paths = if args.paths.is_empty() {
        io::stdin().lock().lines().collect::<io::Result<Vec<_>>>().context("reading paths from stdin")?
    } else {
        args.paths.clone()
    };
    let mut out = io::stdout().lock();
    let mut failed = 0usize;
    for path in &paths {
        let result = match (encode, args.dir) {
            (true, false) => codec.encrypt_path(path),
            (true, true) => codec.encrypt_dir_path(path),
            (false, false) => codec.decrypt_path(path),
            (false, true) => codec.decrypt_dir_path(path),
        };
        match result {
            Ok(name) => writeln!(out, "{name}").context("writing stdout")?,
            Err(err) => {
                failed += 1;
                eprintln!("s32s3: error: {path:?}: {err}");
            }
        }
    }
    out.flush().context("writing stdout")?;
    Ok(match failed {
        0 => exit::OK,
        n if n == paths.len() => exit::FAILED,
        _ => exit::PARTIAL,
    })
}

fn with_threads(threads: Option<usize>, f: impl FnOnce() -> Result<u8> + Send) -> Result<u8> {
    match threads {
        None => f(),
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .context("starting the cipher threads")?
            .install(f),
    }
}

fn open_input(path: Option<&Path>) -> Result<Box<dyn Read + Send>> {
    Ok(match path {
        Some(p) => Box::new(File::open(p).with_context(|| format!("opening {}", p.display()))?),
        None => Box::new(io::stdin()),
    })
}

fn open_output(path: Option<&Path>) -> Result<Box<dyn Write + Send>> {
    Ok(match path {
        Some(p) => Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(io::stdout()),
    })
}

fn describe(path: Option<&Path>, default: &str) -> String {
    path.map_or_else(|| default.to_owned(), |p| p.display().to_string())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Reader thread: fills recycled buffers with blocks of `block` bytes and sends them on; an empty block
/// means end of input.
fn spawn_reader(
    mut input: Box<dyn Read + Send>,
    block: usize,
    recycled: Receiver<Vec<u8>>,
    full: SyncSender<io::Result<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        loop {
            let mut buf = recycled.recv().unwrap_or_default();
            buf.resize(block, 0);
            let result = read_full(&mut *input, &mut buf).map(|n| {
                buf.truncate(n);
                buf
            });
            let done = !matches!(&result, Ok(b) if !b.is_empty());
            if full.send(result).is_err() || done {
                return;
            }
        }
    })
}

/// Writer thread: writes blocks and gives their buffers back.
fn spawn_writer(
    mut output: Box<dyn Write + Send>,
    blocks: Receiver<Vec<u8>>,
    recycled: SyncSender<Vec<u8>>,
) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        for block in blocks {
            output.write_all(&block)?;
            // The cipher may have stopped already; a buffer nobody takes back is simply dropped.
            let _ = recycled.try_send(block);
        }
        output.flush()
    })
}

/// Runs `stage` on each input block in order between a reader and a writer thread.
fn pipeline(
    input: Box<dyn Read + Send>,
    output: Box<dyn Write + Send>,
    in_block: usize,
    input_name: &str,
    output_name: &str,
    mut stage: impl FnMut(&[u8], &mut Vec<u8>) -> Result<bool>,
) -> Result<()> {
    let (in_recycle_tx, in_recycle_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (full_tx, full_rx) = sync_channel(IN_FLIGHT - 1);
    let (out_tx, out_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT - 1);
    let (out_recycle_tx, out_recycle_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let _ = in_recycle_tx.try_send(Vec::with_capacity(in_block));
    }
    let reader = spawn_reader(input, in_block, in_recycle_rx, full_tx);
    let writer = spawn_writer(output, out_rx, out_recycle_tx);
    let mut result = Ok(());
    for block in &full_rx {
        let block = match block {
            Ok(block) => block,
            Err(err) => {
                result = Err(anyhow!(err).context(format!("reading {input_name}")));
                break;
            }
        };
        let last = block.is_empty();
        let mut out = out_recycle_rx.try_recv().unwrap_or_default();
        out.clear();
        let step = stage(&block, &mut out);
        let _ = in_recycle_tx.try_send(block);
        let more = match step {
            Ok(more) => more,
            Err(err) => {
                result = Err(err);
                false
            }
        };
        if !out.is_empty() && out_tx.send(out).is_err() {
            break;
        }
        if last || !more {
            break;
        }
    }
    drop(out_tx);
    drop(full_rx);
    drop(in_recycle_tx);
    let written = writer.join().map_err(|_| anyhow!("the writer thread panicked"))?;
    // On success the reader has already stopped; after an error it stops at its next send (or when an
    // interactive stdin ends), so it is not waited for.
    drop(reader);
    result?;
    written.with_context(|| format!("writing {output_name}"))
}

fn encrypt(args: &ContentArgs) -> Result<u8> {
    let cipher = args.passwords.cipher()?;
    let parallel = args.threads != Some(1);
    let input = open_input(args.input.as_deref())?;
    let output = open_output(args.output.as_deref())?;
    let (input_name, output_name) =
        (describe(args.input.as_deref(), "stdin"), describe(args.output.as_deref(), "stdout"));
    let nonce = Nonce::random()?;
    let mut next_chunk = 0u64;
    let mut header_written = false;
    pipeline(input, output, BLOCK_CHUNKS * CHUNK_SIZE, &input_name, &output_name, |plain, out| {
        if !header_written {
            out.extend_from_slice(&cipher.header(&nonce));
            header_written = true;
        }
        if parallel {
            cipher.encrypt_chunks_parallel(&nonce, next_chunk, plain, out);
        } else {
            cipher.encrypt_chunks(&nonce, next_chunk, plain, out);
        }
        next_chunk += plain.len().div_ceil(CHUNK_SIZE) as u64;
        Ok(true)
    })?;
    Ok(exit::OK)
}

fn decrypt(args: &DecryptArgs) -> Result<u8> {
    let content = &args.content;
    let cipher = content.passwords.cipher()?;
    let input_name = describe(content.input.as_deref(), "stdin");
    let output_name = describe(content.output.as_deref(), "stdout");
    if args.offset > 0 || args.count.is_some() {
        return decrypt_range(args, &cipher, &input_name, &output_name);
    }
    let mut input = open_input(content.input.as_deref())?;
    let mut head = [0u8; HEADER_SIZE];
    let n = read_full(&mut *input, &mut head).with_context(|| format!("reading {input_name}"))?;
    let nonce = Nonce::from_header(&head[..n]).with_context(|| format!("decrypting {input_name}"))?;
    let output = open_output(content.output.as_deref())?;
    let parallel = content.threads != Some(1);
    let mut next_chunk = 0u64;
    pipeline(
        input,
        output,
        BLOCK_CHUNKS * ENCRYPTED_CHUNK_SIZE,
        &input_name,
        &output_name,
        |sealed, out| {
            let result = if parallel {
                cipher.decrypt_chunks_parallel(&nonce, next_chunk, sealed, out)
            } else {
                cipher.decrypt_chunks(&nonce, next_chunk, sealed, out)
            };
            next_chunk += sealed.len().div_ceil(ENCRYPTED_CHUNK_SIZE) as u64;
            result.with_context(|| format!("decrypting {input_name}"))?;
            Ok(true)
        },
    )?;
    Ok(exit::OK)
}

fn decrypt_range(args: &DecryptArgs, cipher: &Cipher, input_name: &str, output_name: &str) -> Result<u8> {
    let content = &args.content;
    let range = ChunkRange::new(args.offset, args.count);
    let mut input: Box<dyn Read + Send> = match content.input.as_deref() {
        Some(path) => {
            let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let mut head = [0u8; HEADER_SIZE];
            let n = read_full(&mut file, &mut head).with_context(|| format!("reading {input_name}"))?;
            let nonce = Nonce::from_header(&head[..n]).with_context(|| format!("decrypting {input_name}"))?;
            file.seek(SeekFrom::Start(range.underlying_offset))
                .with_context(|| format!("seeking {input_name}"))?;
            return copy_range(cipher, nonce, &range, Box::new(file), input_name, content, output_name);
        }
        None => Box::new(io::stdin()),
    };
    let mut head = [0u8; HEADER_SIZE];
    let n = read_full(&mut *input, &mut head).with_context(|| format!("reading {input_name}"))?;
    let nonce = Nonce::from_header(&head[..n]).with_context(|| format!("decrypting {input_name}"))?;
    let skip = range.underlying_offset - HEADER_SIZE as u64;
    io::copy(&mut (&mut input).take(skip), &mut io::sink())
        .with_context(|| format!("reading {input_name}"))?;
    copy_range(cipher, nonce, &range, input, input_name, content, output_name)
}

fn copy_range(
    cipher: &Cipher,
    nonce: Nonce,
    range: &ChunkRange,
    input: Box<dyn Read + Send>,
    input_name: &str,
    content: &ContentArgs,
    output_name: &str,
) -> Result<u8> {
    let limited = input.take(range.underlying_len.unwrap_or(u64::MAX));
    let mut reader =
        DecryptReader::for_range(cipher, nonce, range, limited).parallel(content.threads != Some(1));
    let mut output = open_output(content.output.as_deref())?;
    io::copy(&mut reader, &mut output)
        .with_context(|| format!("decrypting {input_name} to {output_name}"))?;
    output.flush().with_context(|| format!("writing {output_name}"))?;
    Ok(exit::OK)
}
