//! `runnel produce TOPIC`: one record a line from stdin or `--file`, keys split off with
//! `--key-separator`, the same `--header`s on every record. A progress bar shows on a terminal
//! when the input is large; a summary goes to stderr at the end.
//!
//! A reader thread cuts the input into lines without copying them (each line is a slice of a
//! large read buffer) and hands them over in chunks; the async side sends them in order, so a
//! partition's records keep the input's order, and a collector task awaits the deliveries.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runnel_client::producer::accumulator::AccumulatorConfig;
use runnel_client::producer::{Acks, DeliveryFuture, ProduceRecord, Producer, ProducerConfig};
use runnel_client::ClientError;
use runnel_record::Compression;
use tokio::sync::mpsc;

use crate::output::{key_value, ClusterArgs};

/// Bytes read from the input at once; lines are slices of it.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Chunks of lines waiting to be sent.
const CHUNKS_QUEUED_MAX: usize = 8;
/// Deliveries waiting to be awaited; beyond it sending waits for the collector.
const DELIVERIES_QUEUED_MAX: usize = 65_536;
/// An input this large (or still flowing after PROGRESS_DELAY) gets a progress bar.
const LARGE_INPUT_BYTES: u64 = 16 << 20;
const PROGRESS_DELAY: Duration = Duration::from_secs(1);
pub(crate) const MB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Read from this file instead of stdin.
    #[arg(long, short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Split each line at the first SEP into key and value (a line without it has no key).
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// A header on every record (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// Write every record to this partition (default: by key, or sticky batches for no key).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    #[command(flatten)]
    producer: ProducerArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The producer settings `produce` and `bench` share.
#[derive(Debug, Clone, Args)]
pub(crate) struct ProducerArgs {
    /// Replicas that must have a record before it counts as written.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub(crate) acks: AcksArg,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub(crate) compression: CompressionArg,
    /// How long a batch waits for more records (linger.ms).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub(crate) linger_ms: u64,
    /// Most bytes of records in one batch (batch.size).
    #[arg(long, value_name = "BYTES", default_value_t = AccumulatorConfig::default().batch_size)]
    pub(crate) batch_size: usize,
    /// Turn the idempotent producer off (enable.idempotence=false): a retried batch may be
    /// written twice or out of order.
    #[arg(long)]
    pub(crate) no_idempotence: bool,
}

impl ProducerArgs {
    pub(crate) fn config(&self, cluster: &ClusterArgs) -> ProducerConfig {
        let mut config = ProducerConfig::new(cluster.bootstrap.as_str());
        config.acks = self.acks.into();
        config.compression = self.compression.into();
        config.linger = Duration::from_millis(self.linger_ms);
        config.batch_size = self.batch_size;
        config.enable_idempotence = !self.no_idempotence;
        config
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AcksArg {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
    All,
}

impl From<AcksArg> for Acks {
    fn from(acks: AcksArg) -> Acks {
        match acks {
            AcksArg::Zero => Acks::None,
            AcksArg::One => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

impl AcksArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AcksArg::Zero => "0",
            AcksArg::One => "1",
            AcksArg::All => "all",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(compression: CompressionArg) -> Compression {
        match compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

impl CompressionArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CompressionArg::None => "none",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
        }
    }
}

/// Cuts `buffer` into lines (without their `\n` or `\r\n`) as slices of one frozen buffer. The
/// bytes after the last newline stay in `buffer`, unless `at_end`.
fn take_lines(buffer: &mut BytesMut, at_end: bool) -> Vec<Bytes> {
    let cut = if at_end {
        buffer.len()
    } else {
        match buffer.iter().rposition(|&b| b == b'\n') {
            Some(last) => last + 1,
            None => return Vec::new(),
        }
    };
    let whole = buffer.split_to(cut).freeze();
    let mut lines = Vec::new();
    let mut start = 0;
    while start < whole.len() {
        let end = whole[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(whole.len(), |at| start + at);
        let mut line_end = end;
        if line_end > start && whole[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        lines.push(whole.slice(start..line_end));
        start = end + 1;
    }
    lines
}

/// Reads `input` on this (blocking) thread and sends chunks of lines, with the bytes read so
/// far, until the input ends or the receiver is gone.
fn read_lines(
    mut input: impl Read,
    chunks: mpsc::Sender<Vec<Bytes>>,
    bytes_read: &AtomicU64,
) -> std::io::Result<()> {
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        let filled = buffer.len();
        buffer.resize(filled + READ_CHUNK_BYTES, 0);
        let read = loop {
            match input.read(&mut buffer[filled..]) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                result => break result?,
            }
        };
        buffer.truncate(filled + read);
        bytes_read.fetch_add(read as u64, Ordering::Relaxed);
        let at_end = read == 0;
        let lines = take_lines(&mut buffer, at_end);
        if !lines.is_empty() && chunks.blocking_send(lines).is_err() {
            return Ok(());
        }
        if at_end {
            return Ok(());
        }
    }
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let (input, input_bytes): (Box<dyn Read + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let producer = Producer::connect(args.producer.config(&args.cluster))
        .await
        .map_err(|error| args.cluster.connect_error(error))?;

    let bytes_read = Arc::new(AtomicU64::new(0));
    let (chunk_sender, mut chunks) = mpsc::channel::<Vec<Bytes>>(CHUNKS_QUEUED_MAX);
    let reader = {
        let bytes_read = Arc::clone(&bytes_read);
        std::thread::spawn(move || read_lines(input, chunk_sender, &bytes_read))
    };
    let (delivery_sender, deliveries) = mpsc::channel::<DeliveryFuture>(DELIVERIES_QUEUED_MAX);
    let collector = tokio::spawn(collect(deliveries));

    let progress = Progress::new(input_bytes);
    let started = Instant::now();
    let headers: Vec<(String, Bytes)> = args
        .headers
        .iter()
        .map(|(key, value)| (key.clone(), Bytes::from(value.clone())))
        .collect();
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut records: u64 = 0;
    let mut payload_bytes: u64 = 0;
    let mut send_error = None;
    'input: while let Some(lines) = chunks.recv().await {
        for line in lines {
            let (key, value) = split_key(line, separator);
            payload_bytes += (key.as_ref().map_or(0, Bytes::len) + value.len()) as u64;
            let mut record = ProduceRecord::new(args.topic.as_str()).value(value);
            record.key = key;
            record.partition = args.partition;
            for (name, value) in &headers {
                record = record.header(name.as_str(), Some(value.clone()));
            }
            match producer.send(record).await {
                Ok(delivery) => {
                    if delivery_sender.send(delivery).await.is_err() {
                        break 'input; // The collector stopped at a failed delivery.
                    }
                }
                Err(error) => {
                    send_error = Some(error);
                    break 'input;
                }
            }
            records += 1;
        }
        progress.update(
            records,
            payload_bytes,
            bytes_read.load(Ordering::Relaxed),
            started,
        );
    }
    drop(chunks);
    drop(delivery_sender);
    let flushed = producer.flush().await;
    let collected = collector.await.context("the delivery collector failed")?;
    let closed = producer.close().await;
    progress.finish();
    match reader.join() {
        Ok(result) => result.context("cannot read the input")?,
        Err(_) => return Err(anyhow!("the input reader panicked")),
    }
    if let Some(error) = send_error {
        return Err(error.into());
    }
    let delivered = collected?;
    flushed?;
    closed?;

    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "Produced {delivered} records ({:.2} MB) to {:?} in {elapsed:.2} s: {:.0} records/s, {:.2} MB/s.",
        payload_bytes as f64 / MB,
        args.topic,
        delivered as f64 / elapsed,
        payload_bytes as f64 / MB / elapsed,
    );
    Ok(())
}

fn split_key(line: Bytes, separator: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    let Some(separator) = separator.filter(|s| !s.is_empty()) else {
        return (None, line);
    };
    match line
        .windows(separator.len())
        .position(|window| window == separator)
    {
        Some(at) => (Some(line.slice(..at)), line.slice(at + separator.len()..)),
        None => (None, line),
    }
}

/// Awaits deliveries in send order; the count, or the first failure.
async fn collect(mut deliveries: mpsc::Receiver<DeliveryFuture>) -> Result<u64, ClientError> {
    let mut delivered = 0;
    while let Some(delivery) = deliveries.recv().await {
        delivery.await?;
        delivered += 1;
    }
    Ok(delivered)
}

/// A progress bar on stderr when it is a terminal and the input is large (or still flowing
/// after a second); hidden otherwise.
struct Progress {
    bar: ProgressBar,
    terminal: bool,
    input_bytes: Option<u64>,
}

impl Progress {
    fn new(input_bytes: Option<u64>) -> Self {
        let bar = ProgressBar::with_draw_target(input_bytes, ProgressDrawTarget::hidden());
        let style = match input_bytes {
            Some(_) => ProgressStyle::with_template(
                "{bar:30} {percent:>3}% {msg} [{elapsed_precise}, {eta} left]",
            ),
            None => ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]"),
        };
        if let Ok(style) = style {
            bar.set_style(style);
        }
        Progress {
            bar,
            terminal: std::io::stderr().is_terminal(),
            input_bytes,
        }
    }

    fn update(&self, records: u64, payload_bytes: u64, bytes_read: u64, started: Instant) {
        if !self.terminal {
            return;
        }
        if self.bar.is_hidden() {
            let large = self.input_bytes.unwrap_or(0) >= LARGE_INPUT_BYTES
                || started.elapsed() >= PROGRESS_DELAY;
            if !large {
                return;
            }
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_position(bytes_read);
        self.bar.set_message(format!(
            "{records} records, {:.1} MB/s",
            payload_bytes as f64 / MB / elapsed
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_at_newlines_keeping_the_tail() {
        let mut buffer = BytesMut::from(&b"one\r\ntwo\n\nthr"[..]);
        assert_eq!(
            take_lines(&mut buffer, false),
            [&b"one"[..], &b"two"[..], &b""[..]]
        );
        assert_eq!(&buffer[..], b"thr");
        assert!(take_lines(&mut buffer, false).is_empty());
        assert_eq!(take_lines(&mut buffer, true), [&b"thr"[..]]);
        assert!(take_lines(&mut buffer, true).is_empty());
    }

    #[test]
    fn reading_splits_lines_across_reads() {
        let input: Vec<u8> = (1..=50_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let (sender, mut receiver) = mpsc::channel(1024);
        let read = AtomicU64::new(0);
        let reader = std::thread::scope(|scope| {
            let handle = scope.spawn(|| read_lines(&input[..], sender, &read));
            let mut lines = Vec::new();
            while let Some(chunk) = receiver.blocking_recv() {
                lines.extend(chunk);
            }
            assert!(handle.join().expect("reader").is_ok());
            lines
        });
        assert_eq!(reader.len(), 50_000);
        assert_eq!(reader[0], "1");
        assert_eq!(reader[49_999], "50000");
        assert_eq!(read.load(Ordering::Relaxed), input.len() as u64);
    }

    #[test]
    fn keys_split_at_the_first_separator() {
        let line = Bytes::from_static(b"user-1::a::b");
        assert_eq!(
            split_key(line.clone(), Some(b"::")),
            (
                Some(Bytes::from_static(b"user-1")),
                Bytes::from_static(b"a::b")
            )
        );
        assert_eq!(split_key(line.clone(), Some(b"|")), (None, line.clone()));
        assert_eq!(split_key(line.clone(), None), (None, line));
    }
}
