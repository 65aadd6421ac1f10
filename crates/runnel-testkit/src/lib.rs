//! The one kit every test that runs the real `runnel` binary starts it with.
//!
//! - [`NodeProcess`]: a `runnel server` process with its own data directory and log file,
//!   started again on the same directory after a stop or a `kill -9`, killed on drop
//!   (its log is printed if the test is failing).
//! - [`BrokerProcess`]: a broker on a free loopback port, ready once it logs `runnel ready`.
//! - [`ControllerProcess`]: a voter of a controller quorum (`--roles controller`).
//! - [`DevCluster`]: `runnel dev cluster --nodes 3`, a 3-node cluster from one command.
//! - [`PostgresServer`]: a throwaway PostgreSQL server, for the database connectors' tests.
//! - [`run_command`]: a command line (the CLI, kcat) run to its end under a time limit.
//!
//! The binary is not built here: `RUNNEL_BIN`, else `<target>/debug/runnel`, which
//! `cargo test` builds for the CLI crate's tests and `scripts/test.sh` builds first.
//! Protocol helpers stay with the tests that use them (raw frames in the CLI's tests, the
//! Rust client in the client's).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a process may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The `runnel` binary, or a panic saying how to get one.
pub fn runnel_bin() -> PathBuf {
    let path = match std::env::var_os("RUNNEL_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .join("debug/runnel"),
    };
    assert!(
        path.is_file(),
        "no runnel binary at {}: run `cargo build -p runnel-cli` first (scripts/test.sh does), \
         or point RUNNEL_BIN at one",
        path.display()
    );
    path
}

/// A free loopback port (free when asked; a test binds it soon after).
pub fn free_port() -> u16 {
    free_port_run(1)
}

/// The first of `count` consecutive free loopback ports (free when asked).
///
/// Ports come from below the kernel's ephemeral range, so that a client's outgoing
/// connection cannot take one between the asking and the binding (as `bind(0)` ports can),
/// and no port is handed out twice in one test process, so that two nodes of one cluster
/// never get the same port. Tests running side by side in other processes draw from
/// other slices ([`port_slice`]).
pub fn free_port_run(count: u16) -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let slice = port_slice(ephemeral_range_start());
    let span = u32::from(slice.end - slice.start - count);
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let start = random_seed();
    for attempt in 0..span {
        let first = slice.start + ((start + attempt) % span) as u16;
        let run = first..first + count;
        let usable = run.clone().all(|port| {
            !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        if usable {
            handed_out.extend(run);
            return first;
        }
    }
    panic!("no run of {count} free loopback ports found in {slice:?}");
}

/// The ports this test process draws from: 10000 up to the ephemeral range, or, under
/// cargo-nextest (which runs tests side by side, each in its own process), this test's
/// slot's share of them, so that two tests running at once never pick the same port.
fn port_slice(below: u16) -> std::ops::Range<u16> {
    const LOWEST: u16 = 10_000;
    let below = below.max(LOWEST + 1_000);
    let number = |name: &str| std::env::var(name).ok()?.parse::<u16>().ok();
    match (
        number("NEXTEST_TEST_GLOBAL_SLOT"),
        number("NEXTEST_TEST_THREADS"),
    ) {
        (Some(slot), Some(slots)) if slot < slots => {
            let width = (below - LOWEST) / slots;
            LOWEST + slot * width..LOWEST + (slot + 1) * width
        }
        _ => LOWEST..below,
    }
}

/// The first port of the kernel's ephemeral range (Linux's default when unreadable).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A start point that differs between test processes, so that two test binaries run at
/// once rarely try the same ports first.
fn random_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().wrapping_mul(2_654_435_761)
}

/// What a command run by [`run_command`] did.
#[derive(Debug)]
pub struct CommandRun {
    /// The exit code; `None` when a signal ended it, as when it outlived its time limit.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    /// Its stderr (lossily decoded), with a last line saying so if it was killed for taking
    /// too long.
    pub stderr: String,
}

impl CommandRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `command` with `stdin` (or none), and kills it if it runs longer than `limit`: a
/// hung command fails its test instead of hanging the suite. A program that cannot be
/// started fails the test (scripts/test.sh installs what the tests run).
pub fn run_command(mut command: Command, stdin: Option<&[u8]>, limit: Duration) -> CommandRun {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run {program} (scripts/test.sh installs what the tests need): {error}")
        });
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        // Written, and the pipes read, from threads: a child that fills one pipe while we
        // wait on another cannot deadlock us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read_all(child.stdout.take().map(|pipe| Box::new(pipe) as _));
    let stderr = read_all(child.stderr.take().map(|pipe| Box::new(pipe) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().expect("stdout reader");
    let mut stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n({program} killed after {limit:?})"));
    }
    CommandRun {
        code: status.and_then(|status| status.code()),
        stdout,
        stderr,
    }
}

/// A `runnel server` process. Killed on drop, whatever the test's outcome.
#[derive(Debug)]
pub struct NodeProcess {
    child: Option<Child>,
    data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    ready_line: &'static str,
}

impl NodeProcess {
    /// Starts `runnel server --data-dir <data_dir> <args>`, logging to `log_path`, and waits
    /// until its log shows `ready_line`.
    pub fn start(
        data_dir: PathBuf,
        log_path: PathBuf,
        args: Vec<String>,
        ready_line: &'static str,
    ) -> NodeProcess {
        let mut node = NodeProcess {
            child: None,
            data_dir,
            log_path,
            args,
            ready_line,
        };
        node.start_again();
        node
    }

    /// Starts the process again on the same data directory and arguments (after
    /// [`Self::kill9`] or [`Self::stop`]), and waits until it is ready.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the process is still running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let already = self.log().matches(self.ready_line).count();
        let child = Command::new(runnel_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("RUNNEL_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn runnel");
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while self.log().matches(self.ready_line).count() == already {
            assert!(
                self.is_running(),
                "runnel exited before it was ready; log:\n{}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "runnel was not ready in {READY_WITHIN:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process runs; one that exited is reaped and forgotten, so that
    /// [`Self::start_again`] may follow.
    pub fn is_running(&mut self) -> bool {
        let running = self
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)));
        if !running {
            self.child = None;
        }
        running
    }

    /// Kills the process as a crash would (SIGKILL) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process as an operator does (SIGTERM) and checks it exits cleanly within
    /// `within`.
    pub fn stop(&mut self, within: Duration) {
        let Some(pid) = self.pid() else {
            return;
        };
        // The child stays in `self` until it has exited: on a failed check, drop still kills
        // it rather than leave it holding the port and the data directory.
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().expect("wait"));
            if let Some(status) = exited {
                self.child = None;
                assert!(
                    status.success(),
                    "runnel exited with {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "runnel did not stop within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// CPU seconds (user and system) the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.pid().expect("running");
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        // Linux reports in USER_HZ, 100 per second on every architecture it supports.
        ticks / 100.0
    }

    /// Paths of the files the process holds open whose names end with `suffix`.
    pub fn open_files_ending(&self, suffix: &str) -> Vec<PathBuf> {
        let pid = self.pid().expect("running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read /proc/PID/fd")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().ends_with(suffix))
            .collect()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- runnel log ({}) ---\n{}",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// A broker on a free loopback port, with its data under a temporary directory.
#[derive(Debug)]
pub struct BrokerProcess {
    node: NodeProcess,
    pub port: u16,
    _temp: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts a broker with `extra_args` and waits until it accepts connections.
    pub fn start(extra_args: &[&str]) -> BrokerProcess {
        let temp = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            // The default admin port would be shared by every broker a test run starts, and a
            // port picked free beforehand may be taken by then: the kernel picks one at bind
            // time, and `admin_port` reads it from the log.
            "--admin-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        let node = NodeProcess::start(
            temp.path().join("data"),
            temp.path().join(format!("broker-{port}.log")),
            args,
            "runnel ready",
        );
        BrokerProcess {
            node,
            port,
            _temp: temp,
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where its admin listener (`/metrics`, `/health/*`) serves HTTP in its current life,
    /// as its last `runnel ready` line says (`admin=127.0.0.1:PORT`).
    pub fn admin_port(&self) -> u16 {
        let log = self.log();
        log.lines()
            .filter(|line| line.contains("runnel ready"))
            .filter_map(|line| {
                line.split_whitespace()
                    .find_map(|field| field.strip_prefix("admin="))
            })
            .filter_map(|address| address.rsplit_once(':')?.1.parse().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no admin address in the ready line; log:\n{log}"))
    }

    /// Stops the broker cleanly and starts it again on the same data and port.
    pub fn restart(&mut self) {
        self.node.stop(Duration::from_secs(20));
        self.node.start_again();
    }
}

impl Deref for BrokerProcess {
    type Target = NodeProcess;

    fn deref(&self) -> &NodeProcess {
        &self.node
    }
}

impl DerefMut for BrokerProcess {
    fn deref_mut(&mut self) -> &mut NodeProcess {
        &mut self.node
    }
}

/// A voter of a controller quorum (`--roles controller`), with its data under `root`.
#[derive(Debug)]
pub struct ControllerProcess {
    node: NodeProcess,
    pub id: u64,
    pub port: u16,
}

impl ControllerProcess {
    /// Starts voter `id` of `quorum` (`id@host:port,...`) listening on `port`.
    pub fn start(
        id: u64,
        port: u16,
        quorum: &str,
        root: &Path,
        extra_args: &[&str],
    ) -> ControllerProcess {
        let mut args: Vec<String> = [
            "--roles",
            "controller",
            "--node-id",
            &id.to_string(),
            "--controller-listen",
            &format!("127.0.0.1:{port}"),
            "--controller-quorum",
            quorum,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(extra_args.iter().map(|arg| arg.to_string()));
        let node = NodeProcess::start(
            root.join(format!("controller-{id}")),
            root.join(format!("controller-{id}.log")),
            args,
            "runnel controller ready",
        );
        ControllerProcess { node, id, port }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Deref for ControllerProcess {
    type Target = NodeProcess;

    fn deref(&self) -> &NodeProcess {
        &self.node
    }
}

impl DerefMut for ControllerProcess {
    fn deref_mut(&mut self) -> &mut NodeProcess {
        &mut self.node
    }
}

/// `runnel dev cluster --nodes 3`: three nodes started by one command, stopped by Ctrl-C
/// (also on drop, whatever the test's outcome).
#[derive(Debug)]
pub struct DevCluster {
    child: Child,
    bootstrap: String,
}

impl DevCluster {
    /// Starts the cluster and waits for the line that names its bootstrap addresses.
    pub fn start(data_dir: &Path, port: u16, controller_port: u16) -> DevCluster {
        let child = Command::new(runnel_bin())
            .args(["dev", "cluster", "--nodes", "3", "--data-dir"])
            .arg(data_dir)
            .args(["--port", &port.to_string()])
            .args(["--controller-port", &controller_port.to_string()])
            // The default admin ports would be shared with whatever else a test run starts.
            .args(["--admin-port", &free_port_run(3).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn runnel dev cluster");
        // Owned first, so that a failing wait below still kills it.
        let mut cluster = DevCluster {
            child,
            bootstrap: String::new(),
        };
        let stdout = cluster.child.stdout.take().expect("stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(left)
                .expect("runnel dev cluster printed its bootstrap addresses");
            if let Some(bootstrap) = line.strip_prefix("Bootstrap: ") {
                cluster.bootstrap = bootstrap.to_owned();
                return cluster;
            }
        }
    }

    /// The bootstrap addresses it printed, comma-separated.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Runs `runnel ARGS --bootstrap <this cluster>`, which must succeed.
    pub fn runnel(&self, args: &[&str]) -> Output {
        let output = Command::new(runnel_bin())
            .args(args)
            .args(["--bootstrap", &self.bootstrap])
            .output()
            .expect("run runnel");
        assert!(
            output.status.success(),
            "runnel {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Ctrl-C, as a person stops it; every node must stop cleanly.
    pub fn interrupt(mut self) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "runnel dev cluster exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "runnel dev cluster did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DevCluster {
    /// A failing test still stops the nodes: Ctrl-C first (SIGKILL would leave them running,
    /// in their own process group), SIGKILL only if that does not work.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PostgreSQL server from Debian's packages (`apt-get install postgresql`), on a
/// free loopback port with its cluster in a temporary directory, `wal_level=logical` for
/// change data capture, trust authentication for the `postgres` user, and database
/// `runnel`. Stopped (immediately) on drop.
///
/// PostgreSQL refuses to run as root: as root, the cluster is created and run as the
/// `postgres` system user the package creates. A machine without the server fails the test
/// with what to install, never skips it.
#[derive(Debug)]
pub struct PostgresServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

impl PostgresServer {
    /// Starts a server and creates database `runnel`.
    pub fn start() -> PostgresServer {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("runnel-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        // Whether this process is root, by `id -u`, which keeps the kit free of libc.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let server = PostgresServer {
            dir,
            port: free_port(),
            bin,
            as_postgres,
        };
        if as_postgres {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .expect("chown runs");
            assert!(
                chown.success(),
                "cannot give {} to the postgres user",
                server.dir.path().display()
            );
        }
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=20 \
             -c max_wal_senders=20 -c fsync=off",
            server.port,
            server.dir.path().display()
        );
        let log = server.dir.path().join("postgres.log").display().to_string();
        server.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "30", "start",
            ],
        );
        server.psql("postgres", "CREATE DATABASE runnel");
        server
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs a PostgreSQL program, as the postgres user when this process is root.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        );
        output
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `jdbc:postgresql://` URL of database `runnel`, as JDBC connectors' configs name it.
    pub fn jdbc_url(&self) -> String {
        format!("jdbc:postgresql://127.0.0.1:{}/runnel", self.port)
    }

    /// A libpq / tokio-postgres connection string for database `runnel`.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=runnel",
            self.port
        )
    }

    /// Runs `sql` in `database` with psql (stopping at the first error) and returns what it
    /// printed: unaligned, tuples only, `|` between columns.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let output = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-A",
                "-t",
                "-q",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Where Debian's PostgreSQL server programs are (`/usr/lib/postgresql/<major>/bin`), the
/// newest major version if several are installed.
fn postgres_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server under {}: install Debian's package (apt-get install -y postgresql); \
             scripts/test.sh does",
            root.display()
        )
    })
}
