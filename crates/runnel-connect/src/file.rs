//! The file connectors, with the configs of Kafka's `FileStreamSource` and `FileStreamSink`:
//! lines of a file become string records, and records become lines of a file.
//!
//! The source remembers how far it read as `{"filename": FILE}` -> `{"position": BYTES}`, as
//! Kafka's does (Kafka counts characters; a byte position is the same for ASCII and cannot
//! split a UTF-8 character). It emits only complete lines, so a line being written is read
//! once it ends. The sink writes each record's value and a newline, and makes the file
//! durable (fsync) before its offsets are committed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::config::{ConfigDef, ConfigType, ConfigValue, Configs, Importance, Validator};
use crate::connector::{
    ConnectError, Connector, ConnectorContext, Plugin, SinkTask, SourceTask, TaskContext,
    TaskFactory, TopicPartition,
};
use crate::data::{
    ConnectRecord, Schema, SchemaAndValue, SchemaType, SinkRecord, SourceOffset, SourcePartition,
    SourceRecord, Value,
};

/// Kafka's FileStreamSource, under its names.
pub const FILE_SOURCE: Plugin = Plugin {
    class: "org.apache.kafka.connect.file.FileStreamSourceConnector",
    aliases: &["FileStreamSource", "FileStreamSourceConnector"],
    connector: || Box::new(FileSourceConnector::default()),
    task: TaskFactory::Source(|| Box::new(FileSourceTask::default())),
};

/// Kafka's FileStreamSink, under its names.
pub const FILE_SINK: Plugin = Plugin {
    class: "org.apache.kafka.connect.file.FileStreamSinkConnector",
    aliases: &["FileStreamSink", "FileStreamSinkConnector"],
    connector: || Box::new(FileSinkConnector::default()),
    task: TaskFactory::Sink(|| Box::new(FileSinkTask::default())),
};

/// How long a poll waits when the file has no new complete line.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// The source's connector: one task, whatever `tasks.max` says, since a file has one reader.
#[derive(Debug, Default)]
struct FileSourceConnector {
    configs: Configs,
}

fn source_def() -> ConfigDef {
    ConfigDef::new()
        .define(
            "file",
            ConfigType::String,
            None,
            Importance::High,
            "",
            "The file to read.",
        )
        .optional()
        .define(
            "topic",
            ConfigType::String,
            None,
            Importance::High,
            "",
            "The topic to write each line to.",
        )
        .define(
            "batch.size",
            ConfigType::Int,
            Some("2000"),
            Importance::Low,
            "",
            "The most records a poll returns.",
        )
        .validated(Validator::Range { min: 1, max: None })
}

impl Connector for FileSourceConnector {
    fn config_def(&self) -> ConfigDef {
        source_def()
    }

    fn validate(&self, configs: &Configs) -> Vec<ConfigValue> {
        let mut values = source_def().validate(configs);
        for value in &mut values {
            if value.name == "topic" && value.errors.is_empty() && configs.list("topic").len() != 1
            {
                value.errors.push(format!(
                    "Invalid value {} for configuration topic: must name exactly one topic",
                    configs.get("topic").unwrap_or("")
                ));
            }
            if value.name == "file" && configs.get("file").is_none_or(|f| f.trim().is_empty()) {
                // Kafka reads standard input then; a worker's standard input is no source.
                value
                    .errors
                    .push("Missing required configuration \"file\": a path to read".to_owned());
            }
        }
        values
    }

    fn start(&mut self, configs: &Configs, _context: ConnectorContext) -> Result<(), ConnectError> {
        self.configs = configs.clone();
        Ok(())
    }

    fn task_configs(&mut self, _max_tasks: usize) -> Result<Vec<Configs>, ConnectError> {
        Ok(vec![self.configs.clone()])
    }

    fn stop(&mut self) {}
}

/// Reads lines from where the last committed offset says.
#[derive(Debug, Default)]
struct FileSourceTask {
    path: String,
    topic: String,
    batch_size: usize,
    reader: Option<BufReader<File>>,
    /// The byte position after the last complete line returned.
    position: u64,
    partial: Vec<u8>,
}

impl FileSourceTask {
    fn partition(&self) -> SourcePartition {
        let mut partition = SourcePartition::new();
        partition.insert("filename".into(), self.path.clone().into());
        partition
    }

    fn open(&mut self) -> Result<bool, ConnectError> {
        if self.reader.is_some() {
            return Ok(true);
        }
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(ConnectError::failed(format!(
                    "cannot open {}: {e}",
                    self.path
                )))
            }
        };
        file.seek(SeekFrom::Start(self.position)).map_err(|e| {
            ConnectError::failed(format!(
                "cannot seek {} to {}: {e}",
                self.path, self.position
            ))
        })?;
        self.reader = Some(BufReader::new(file));
        Ok(true)
    }
}

impl SourceTask for FileSourceTask {
    fn start(&mut self, configs: &Configs, context: &TaskContext) -> Result<(), ConnectError> {
        self.path = configs.required("file")?.to_owned();
        self.topic = configs
            .list("topic")
            .into_iter()
            .next()
            .ok_or_else(|| ConnectError::failed("no topic"))?;
        self.batch_size = configs.parsed_or("batch.size", 2000, ConfigType::Int)?;
        self.position = context
            .offset(&self.partition())
            .and_then(|offset| offset.get("position").and_then(serde_json::Value::as_u64))
            .unwrap_or(0);
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError> {
        if !self.open()? {
            std::thread::sleep(IDLE_POLL);
            return Ok(Vec::new());
        }
        let partition = self.partition();
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        while records.len() < self.batch_size {
            let read = reader
                .read_until(b'\n', &mut self.partial)
                .map_err(|e| ConnectError::Retriable(format!("cannot read {}: {e}", self.path)))?;
            if read == 0 || self.partial.last() != Some(&b'\n') {
                break; // At the end; a partial line waits in `partial` for the rest.
            }
            self.position += self.partial.len() as u64;
            let mut line = std::mem::take(&mut self.partial);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let mut offset = SourceOffset::new();
            offset.insert("position".into(), self.position.into());
            records.push(SourceRecord {
                record: ConnectRecord::new(
                    self.topic.clone(),
                    SchemaAndValue::new(Some(Schema::new(SchemaType::String)), Value::String(text)),
                ),
                source_partition: partition.clone(),
                source_offset: offset,
            });
        }
        if records.is_empty() {
            std::thread::sleep(IDLE_POLL);
        }
        Ok(records)
    }

    fn stop(&mut self) {
        self.reader = None;
    }
}

#[derive(Debug, Default)]
struct FileSinkConnector {
    configs: Configs,
}

fn sink_def() -> ConfigDef {
    ConfigDef::new()
        .define(
            "file",
            ConfigType::String,
            None,
            Importance::High,
            "",
            "The file to append each record's value to, one per line; the worker's standard \
             output when unset.",
        )
        .optional()
}

impl Connector for FileSinkConnector {
    fn config_def(&self) -> ConfigDef {
        sink_def()
    }

    fn start(&mut self, configs: &Configs, _context: ConnectorContext) -> Result<(), ConnectError> {
        self.configs = configs.clone();
        Ok(())
    }

    fn task_configs(&mut self, max_tasks: usize) -> Result<Vec<Configs>, ConnectError> {
        // Several tasks appending to one file interleave whole lines, as Kafka's do.
        Ok(vec![self.configs.clone(); max_tasks.max(1)])
    }

    fn stop(&mut self) {}
}

/// Where the sink writes: a file, or the worker's standard output as Kafka's does without one.
#[derive(Debug)]
enum Output {
    File(std::io::BufWriter<File>),
    Stdout(std::io::Stdout),
}

impl Output {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::File(file) => file,
            Output::Stdout(stdout) => stdout,
        }
    }

    /// Flushes, and for a file makes it durable.
    fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(file) => {
                file.flush()?;
                file.get_ref().sync_data()
            }
            Output::Stdout(stdout) => stdout.flush(),
        }
    }
}

#[derive(Debug, Default)]
struct FileSinkTask {
    path: String,
    out: Option<Output>,
}

impl FileSinkTask {
    fn out(&mut self) -> Result<&mut Output, ConnectError> {
        self.out
            .as_mut()
            .ok_or_else(|| ConnectError::failed("the sink is not started"))
    }
}

impl SinkTask for FileSinkTask {
    fn start(&mut self, configs: &Configs, _context: &TaskContext) -> Result<(), ConnectError> {
        let path = configs.get("file").map(str::trim).unwrap_or("");
        if path.is_empty() {
            self.path = "standard output".to_owned();
            self.out = Some(Output::Stdout(std::io::stdout()));
            return Ok(());
        }
        self.path = path.to_owned();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| {
                ConnectError::failed(format!("cannot open {} to append: {e}", self.path))
            })?;
        self.out = Some(Output::File(std::io::BufWriter::new(file)));
        Ok(())
    }

    fn put(&mut self, records: &[SinkRecord]) -> Result<(), ConnectError> {
        let path = self.path.clone();
        let out = self.out()?.writer();
        let write_error =
            |e: std::io::Error| ConnectError::Retriable(format!("cannot write {path}: {e}"));
        for record in records {
            let value = &record.record.value;
            match &value.value {
                // Raw bytes are written as they are, so that a byte-array pipeline is exact.
                Value::Bytes(bytes) => out.write_all(bytes),
                other => out.write_all(other.display(value.schema.as_ref()).as_bytes()),
            }
            .and_then(|()| out.write_all(b"\n"))
            .map_err(write_error)?;
        }
        // Readers of the file see each batch at once; durability waits for `flush`.
        out.flush().map_err(write_error)
    }

    fn flush(&mut self, _offsets: &BTreeMap<TopicPartition, i64>) -> Result<(), ConnectError> {
        let path = self.path.clone();
        self.out()?
            .sync()
            .map_err(|e| ConnectError::Retriable(format!("cannot flush {path}: {e}")))
    }

    fn stop(&mut self) {
        if let Some(mut out) = self.out.take() {
            if let Err(e) = out.writer().flush() {
                tracing::warn!(path = %self.path, error = %e, "cannot flush the file sink on stop");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::OffsetReader;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    struct Offsets(Option<SourceOffset>);

    impl OffsetReader for Offsets {
        fn offset(&self, _partition: &SourcePartition) -> Option<SourceOffset> {
            self.0.clone()
        }
    }

    fn context(offset: Option<u64>) -> TaskContext {
        let offset = offset.map(|p| {
            let mut o = SourceOffset::new();
            o.insert("position".into(), p.into());
            o
        });
        TaskContext::new(
            "c",
            0,
            Arc::new(AtomicBool::new(false)),
            Arc::new(Offsets(offset)),
        )
    }

    fn source(path: &std::path::Path, offset: Option<u64>) -> FileSourceTask {
        let mut configs = Configs::new();
        configs.set("file", path.display().to_string());
        configs.set("topic", "lines");
        let mut task = FileSourceTask::default();
        task.start(&configs, &context(offset)).unwrap();
        task
    }

    fn lines(records: &[SourceRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| r.record.value.value.display(None))
            .collect()
    }

    #[test]
    fn the_source_reads_complete_lines_and_resumes_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "one\ntwo\r\nthr").unwrap();
        let mut task = source(&path, None);
        let records = task.poll().unwrap();
        assert_eq!(lines(&records), ["one", "two"]);
        assert_eq!(records[1].source_offset["position"], 9);
        assert_eq!(
            records[0].source_partition["filename"],
            path.display().to_string()
        );

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"ee\n").unwrap();
        assert_eq!(lines(&task.poll().unwrap()), ["three"]);

        let mut resumed = source(&path, Some(4));
        assert_eq!(lines(&resumed.poll().unwrap()), ["two", "three"]);
    }

    #[test]
    fn a_missing_file_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.txt");
        let mut task = source(&path, None);
        assert!(task.poll().unwrap().is_empty());
        std::fs::write(&path, "now\n").unwrap();
        assert_eq!(lines(&task.poll().unwrap()), ["now"]);
    }

    #[test]
    fn validation_wants_one_topic_and_a_file() {
        let mut configs = Configs::new();
        configs.set("topic", "a,b");
        let values = FileSourceConnector::default().validate(&configs);
        let errors: Vec<&str> = values
            .iter()
            .filter(|v| !v.errors.is_empty())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(errors, ["file", "topic"]);
    }

    #[test]
    fn the_sink_appends_values_as_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut configs = Configs::new();
        configs.set("file", path.display().to_string());
        let mut task = FileSinkTask::default();
        task.start(&configs, &context(None)).unwrap();
        let record = |value: Value| SinkRecord {
            record: ConnectRecord::new("t", SchemaAndValue::new(None, value)),
            kafka_offset: 0,
        };
        task.put(&[
            record(Value::String("a".into())),
            record(Value::Bytes(b"b\xff".to_vec())),
        ])
        .unwrap();
        task.flush(&BTreeMap::new()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a\nb\xff\n");
    }
}
