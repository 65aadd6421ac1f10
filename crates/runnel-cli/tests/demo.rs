//! `runnel demo` end to end: the real binary on a temporary data directory and free ports,
//! until the Connect sink has written windowed counts into SQLite; the console and health
//! URLs it prints answer; SIGTERM stops it cleanly, nodes included.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use runnel_testkit::{free_port, free_port_run};

/// The demo, stopped on drop whatever the test's outcome: SIGTERM, then SIGKILL for it and
/// for any node of its data directory still running.
struct Demo {
    child: Child,
    data_dir: PathBuf,
    stderr: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl Demo {
    fn start(root: &Path) -> Demo {
        let data_dir = root.join("demo");
        let stderr = root.join("demo.stderr");
        let stderr_file = std::fs::File::create(&stderr).expect("create the stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(["demo", "--data-dir"])
            .arg(&data_dir)
            .args(["--port", &free_port_run(3).to_string()])
            .args(["--controller-port", &free_port_run(3).to_string()])
            .args(["--admin-port", &free_port_run(3).to_string()])
            .args(["--connect-port", &free_port().to_string()])
            // Busier than the default, so that the first windows fill quickly.
            .args(["--rate", "20"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .expect("spawn runnel demo");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("demo: {line}");
                let _ = sender.send(line);
            }
        });
        Demo {
            child,
            data_dir,
            stderr,
            lines,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The rest of the first printed line that starts with `prefix`.
    fn wait_for_line(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "runnel demo printed no {prefix:?} line within {within:?}; stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then its exit status within `within`.
    fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "runnel demo did not stop within {within:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal("-TERM");
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Nodes run in their own process group: a demo killed above leaves them behind.
        for pid in processes_naming(&self.data_dir) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The processes whose command line names `dir`: the demo's nodes.
fn processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|arg| arg.contains(&needle))
            })
        })
        .collect()
}

/// One windowed count as the sink wrote it.
#[derive(Debug)]
struct Row {
    page: String,
    window_start: i64,
    window_end: i64,
    count: i64,
}

/// The table's rows; none while the database or the table does not exist yet.
fn pageview_rows(database: &Path) -> Vec<Row> {
    let Ok(db) =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut statement) =
        db.prepare("SELECT page, window_start, window_end, \"count\" FROM pageviews")
    else {
        return Vec::new();
    };
    let rows = statement.query_map([], |row| {
        Ok(Row {
            page: row.get(0)?,
            window_start: row.get(1)?,
            window_end: row.get(2)?,
            count: row.get(3)?,
        })
    });
    match rows {
        Ok(rows) => rows.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

/// The status code of `GET http://ADDRESS/PATH`.
fn http_status(address: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let read = stream.read(&mut head)?;
    let head = String::from_utf8_lossy(&head[..read]);
    head.split_whitespace()
        .nth(1)
        .filter(|_| head.starts_with("HTTP/1."))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))
}

#[test]
fn the_demo_counts_clicks_into_sqlite_and_stops_cleanly_on_sigterm() {
    let root = tempfile::tempdir().expect("temp dir");
    let mut demo = Demo::start(root.path());
    let started = Instant::now();

    let console = demo.wait_for_line("Console:", Duration::from_secs(90));
    let bootstrap = demo.wait_for_line("Bootstrap:", Duration::from_secs(5));
    assert_eq!(bootstrap.split(',').count(), 3, "{bootstrap}");

    let database = demo.data_dir.join("pageviews.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = pageview_rows(&database);
        if !rows.is_empty() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no windowed count in {} within 60 s; stderr:\n{}",
            database.display(),
            demo.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for row in &rows {
        assert!(row.count > 0, "{row:?}");
        assert_eq!(row.window_end - row.window_start, 10_000, "{row:?}");
        assert_eq!(row.window_start % 10_000, 0, "windows are aligned: {row:?}");
        assert!(row.page.starts_with('/'), "{row:?}");
    }
    // The upsert keeps one row per page and window.
    let mut keys: Vec<(&str, i64)> = rows
        .iter()
        .map(|row| (row.page.as_str(), row.window_start))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "{rows:?}");

    // Node 1's admin listener serves the console; until the console is built any answer
    // of that listener will do, but it must be ready.
    let (admin, console_path) = console
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(admin, path)| (admin.to_owned(), format!("/{path}")))
        .unwrap_or_else(|| panic!("a console URL: {console}"));
    assert_eq!(console_path, "/console/");
    let status = http_status(&admin, &console_path).expect("the console URL answers");
    assert!((100..600).contains(&status), "{status}");
    assert_eq!(
        http_status(&admin, "/health/ready").expect("/health/ready answers"),
        200
    );

    let status = demo.terminate(Duration::from_secs(60));
    assert!(
        status.success(),
        "runnel demo exited with {status}; stderr:\n{}",
        demo.stderr()
    );
    let left = processes_naming(&demo.data_dir);
    assert!(left.is_empty(), "processes left running: {left:?}");
    println!("the demo ran and stopped in {:?}", started.elapsed());
}
