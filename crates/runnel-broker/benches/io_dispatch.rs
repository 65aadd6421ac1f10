//! How disk work is handed off the async workers: Runnel's fixed I/O pool against
//! `tokio::task::spawn_blocking` bounded by a semaphore (the other design the hardening issue
//! weighed), for an empty job (the hand-off itself) and a 1 KiB `pwrite` (an append to the
//! page cache), one at a time and 64 in flight.
//!
//! `cargo bench -p runnel-broker --bench io_dispatch`

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::future::join_all;
use runnel_broker::IoPool;
use tokio::sync::Semaphore;

const IO_THREADS: usize = 8;
const QUEUE: usize = 500;

/// One job: nothing, or 1 KiB written at the next position of a shared file.
#[derive(Clone)]
struct Job {
    file: Option<Arc<File>>,
    position: Arc<AtomicU64>,
}

impl Job {
    fn run(&self) {
        if let Some(file) = &self.file {
            let at = self.position.fetch_add(1024, Ordering::Relaxed) % (64 << 20);
            file.write_all_at(&[7u8; 1024], at).expect("pwrite");
        }
    }
}

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = Arc::new(File::create(dir.path().join("bench.log")).expect("file"));
    let pool = Arc::new(IoPool::new(IO_THREADS, QUEUE).expect("pool"));
    let permits = Arc::new(Semaphore::new(QUEUE));
    let mut group = c.benchmark_group("io_dispatch");
    for (work, file) in [("empty", None), ("pwrite_1k", Some(file))] {
        let job = Job {
            file,
            position: Arc::new(AtomicU64::new(0)),
        };
        for in_flight in [1usize, 64] {
            group.throughput(Throughput::Elements(in_flight as u64));
            let name = format!("{work}/{in_flight}_in_flight");
            group.bench_function(BenchmarkId::new("io_pool", &name), |b| {
                b.iter(|| {
                    runtime.block_on(join_all((0..in_flight).map(|_| {
                        let job = job.clone();
                        let pool = Arc::clone(&pool);
                        async move { pool.run(move || job.run()).await.expect("job") }
                    })))
                })
            });
            group.bench_function(BenchmarkId::new("spawn_blocking", &name), |b| {
                b.iter(|| {
                    runtime.block_on(join_all((0..in_flight).map(|_| {
                        let job = job.clone();
                        let permits = Arc::clone(&permits);
                        async move {
                            let _permit = permits.acquire_owned().await.expect("permit");
                            tokio::task::spawn_blocking(move || job.run())
                                .await
                                .expect("job")
                        }
                    })))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
