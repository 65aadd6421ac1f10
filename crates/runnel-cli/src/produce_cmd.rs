//! `runnel produce TOPIC`: records from stdin or `--file`, as kcat -P reads them: one a line
//! (or ending in `-D`'s delimiter), keys split off at `-K` or one `-k` key for all, empty keys
//! and values sent as null with `-Z`, the same `-H` headers on every record; or laid out by an
//! input template (`-f '%k %v\n'`, see [`input`]). `--print-delivery` prints where each record
//! landed, in input order. A progress bar shows on a terminal when the input is large; a
//! summary goes to stderr at the end.
//!
//! A reader thread cuts the input into records without copying them (each is a slice of a
//! large read buffer) and hands them over in chunks; the async side sends them in order, so a
//! partition's records keep the input's order, and a collector task awaits the deliveries.

mod input;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use runnel_client::consumer::ConsumerRecord;
use runnel_client::producer::accumulator::AccumulatorConfig;
use runnel_client::producer::{Acks, DeliveryFuture, ProduceRecord, Producer, ProducerConfig};
use runnel_client::ClientError;
use runnel_record::{Compression, TimestampType};
use tokio::sync::mpsc;

use crate::output::{key_value, ClusterArgs};
use crate::template::{unescape, RecordFormat};
use input::{InputFormat, InputRecord};

/// Bytes read from the input at once; records are slices of it.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Chunks of records waiting to be sent.
const CHUNKS_QUEUED_MAX: usize = 8;
/// Deliveries waiting to be awaited; beyond it sending waits for the collector.
const DELIVERIES_QUEUED_MAX: usize = 65_536;
/// An input this large (or still flowing after PROGRESS_DELAY) gets a progress bar.
const LARGE_INPUT_BYTES: u64 = 16 << 20;
const PROGRESS_DELAY: Duration = Duration::from_secs(1);
pub(crate) const MB: f64 = 1024.0 * 1024.0;
/// What `--print-delivery` prints without a format.
const DELIVERY_FORMAT: &str = "%t %p %o\\n";

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Read from this file instead of stdin.
    #[arg(long, short = 'l', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Records end at DELIM rather than at a newline (\n, \t, \0, \xHH escapes; e.g. -D '\x00'
    /// or -D '|'). With the default newline, \r\n ends a record too.
    #[arg(
        long = "delimiter",
        short = 'D',
        value_name = "DELIM",
        default_value = "\\n"
    )]
    delimiter: String,
    /// Split each record at the first SEP into key and value (a record without it has no
    /// key, or --key's); escapes as -D.
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// This key on every record (with -K: on those without a key of their own, as kcat).
    #[arg(long, short = 'k', value_name = "KEY")]
    key: Option<String>,
    /// Send empty keys and values as null (kcat's -Z): an empty value is a tombstone.
    #[arg(short = 'Z', long = "null-empty")]
    null_empty: bool,
    /// Read records laid out by this template instead of one a line: %k key, %v value, %T
    /// timestamp (epoch ms or RFC 3339), %p partition, %h headers (k=v,k=v), %% and escapes,
    /// each field ending at the text after it, e.g. '%k %v\n' or '%T,%k,%v\n'.
    #[arg(
        long,
        short = 'f',
        value_name = "TEMPLATE",
        conflicts_with_all = ["key_separator", "delimiter"]
    )]
    format: Option<String>,
    /// A header on every record (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = key_value)]
    headers: Vec<(String, String)>,
    /// Write every record to this partition (default: by key, or sticky batches for no key).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Print each acknowledged record, in input order, to stdout: `%t %p %o\n` (topic,
    /// partition, offset) unless a template (as consume's: %t %p %o %T %k %v %h...) or `json`
    /// is given.
    #[arg(
        long,
        value_name = "FORMAT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = DELIVERY_FORMAT
    )]
    print_delivery: Option<String>,
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

/// Reads `input` on this (blocking) thread and sends chunks of records, until the input
/// ends, it does not match its format, or the receiver is gone.
fn read_records(
    mut input: impl Read,
    mut format: InputFormat,
    chunks: mpsc::Sender<Vec<InputRecord>>,
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
        let records = format
            .take_records(&mut buffer, at_end)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
        if !records.is_empty() && chunks.blocking_send(records).is_err() {
            return Ok(());
        }
        if at_end {
            return Ok(());
        }
    }
}

impl ProduceArgs {
    fn input_format(&self) -> anyhow::Result<InputFormat> {
        let format = match &self.format {
            Some(template) => InputFormat::template(template),
            None => {
                let delimiter =
                    unescape(&self.delimiter).map_err(|error| anyhow!("--delimiter: {error}"))?;
                let separator = match &self.key_separator {
                    Some(separator) => Some(
                        unescape(separator).map_err(|error| anyhow!("--key-separator: {error}"))?,
                    ),
                    None => None,
                };
                InputFormat::delimited(delimiter, separator)
            }
        }
        .map_err(anyhow::Error::msg)?;
        if self.key.is_some() && format.reads_keys() {
            bail!("--key gives every record one key; the input format reads keys too (%k)");
        }
        Ok(format
            .with_fixed_key(self.key.clone().map(Bytes::from))
            .with_empty_as_null(self.null_empty))
    }
}

pub(crate) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let format = args.input_format()?;
    let delivery_format = match &args.print_delivery {
        Some(text) => Some(
            RecordFormat::parse(text, false)
                .map_err(|error| anyhow!("--print-delivery: {error}"))?,
        ),
        None => None,
    };
    let (input, input_bytes): (Box<dyn Read + Send>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let mut config = args.producer.config(&args.cluster);
    // The profile's and -X's client properties too.
    config.client = args.cluster.client_config()?;
    let producer = Producer::connect(config)
        .await
        .map_err(|error| args.cluster.connect_error(error))?;

    let bytes_read = Arc::new(AtomicU64::new(0));
    let (chunk_sender, mut chunks) = mpsc::channel::<Vec<InputRecord>>(CHUNKS_QUEUED_MAX);
    let reader = {
        let bytes_read = Arc::clone(&bytes_read);
        std::thread::spawn(move || read_records(input, format, chunk_sender, &bytes_read))
    };
    let (delivery_sender, deliveries) = mpsc::channel::<Sent>(DELIVERIES_QUEUED_MAX);
    let printing = delivery_format.is_some();
    let collector = tokio::spawn(collect(deliveries, delivery_format));

    let progress = Progress::new(input_bytes);
    let started = Instant::now();
    let headers: Vec<(String, Bytes)> = args
        .headers
        .iter()
        .map(|(key, value)| (key.clone(), Bytes::from(value.clone())))
        .collect();
    let topic: Arc<str> = Arc::from(args.topic.as_str());
    let mut records: u64 = 0;
    let mut payload_bytes: u64 = 0;
    let mut send_error = None;
    'input: while let Some(chunk) = chunks.recv().await {
        for input in chunk {
            payload_bytes += (input.key.as_ref().map_or(0, Bytes::len)
                + input.value.as_ref().map_or(0, Bytes::len)) as u64;
            let mut record = ProduceRecord::new(args.topic.as_str());
            record.key = input.key;
            record.value = input.value;
            record.partition = input.partition.or(args.partition);
            record.timestamp_ms = input.timestamp_ms;
            record.headers = input.headers;
            for (name, value) in &headers {
                record.headers.push((name.clone(), Some(value.clone())));
            }
            // What --print-delivery shows of the record, besides where it landed.
            let shown = printing.then(|| ConsumerRecord {
                topic: Arc::clone(&topic),
                partition: -1,
                offset: -1,
                timestamp: -1,
                timestamp_type: TimestampType::CreateTime,
                key: record.key.clone(),
                value: record.value.clone(),
                headers: record.headers.clone(),
                leader_epoch: None,
            });
            match producer.send(record).await {
                Ok(delivery) => {
                    if delivery_sender
                        .send(Sent { delivery, shown })
                        .await
                        .is_err()
                    {
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

/// A record handed to the producer: its delivery, and for --print-delivery the record.
struct Sent {
    delivery: DeliveryFuture,
    shown: Option<ConsumerRecord>,
}

/// Awaits deliveries in send order, printing each with `format` if given; the count, or the
/// first failure.
async fn collect(
    mut deliveries: mpsc::Receiver<Sent>,
    format: Option<RecordFormat>,
) -> Result<u64, ClientError> {
    let mut delivered = 0;
    let mut printed = Vec::new();
    // A reader that closed stdout (`| head`) wants no more; producing goes on.
    let mut stdout_open = true;
    while let Some(sent) = deliveries.recv().await {
        let metadata = sent.delivery.await?;
        delivered += 1;
        if let (Some(format), Some(mut record)) = (&format, sent.shown) {
            record.partition = metadata.partition;
            record.offset = metadata.offset;
            record.timestamp = metadata.timestamp_ms;
            format.render(&record, &mut printed);
            // Written when no acknowledgement is waiting, so lines come out as records land.
            if stdout_open && (deliveries.is_empty() || printed.len() >= 64 * 1024) {
                stdout_open = write_stdout(&printed);
                printed.clear();
            }
        }
    }
    if stdout_open && !printed.is_empty() {
        write_stdout(&printed);
    }
    Ok(delivered)
}

/// Whether stdout still takes output.
fn write_stdout(bytes: &[u8]) -> bool {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(error) => {
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::warn!(%error, "cannot print deliveries to stdout");
            }
            false
        }
    }
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
    fn reading_cuts_records_across_reads() {
        let input: Vec<u8> = (1..=50_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let (sender, mut receiver) = mpsc::channel(1024);
        let read = AtomicU64::new(0);
        let format = InputFormat::delimited(b"\n".to_vec(), None).expect("valid");
        let records = std::thread::scope(|scope| {
            let handle = scope.spawn(|| read_records(&input[..], format, sender, &read));
            let mut records = Vec::new();
            while let Some(chunk) = receiver.blocking_recv() {
                records.extend(chunk);
            }
            assert!(handle.join().expect("reader").is_ok());
            records
        });
        assert_eq!(records.len(), 50_000);
        assert_eq!(records[0].value.as_deref(), Some(&b"1"[..]));
        assert_eq!(records[49_999].value.as_deref(), Some(&b"50000"[..]));
        assert_eq!(read.load(Ordering::Relaxed), input.len() as u64);
    }

    #[test]
    fn input_that_does_not_match_stops_the_reader() {
        let (sender, mut receiver) = mpsc::channel(16);
        let read = AtomicU64::new(0);
        let format = InputFormat::template("%k %v\\n").expect("valid");
        let result = std::thread::scope(|scope| {
            let handle = scope.spawn(|| read_records(&b"a 1\nb"[..], format, sender, &read));
            while receiver.blocking_recv().is_some() {}
            handle.join().expect("reader")
        });
        let error = result.expect_err("the last record lacks its key's separator");
        assert!(error.to_string().contains("record 2"), "{error}");
    }
}
