//! The I/O pool: a fixed set of threads (`num.io.threads`) that run every blocking operation the
//! broker does, off the async workers: partition appends, fsyncs, fetch reads, index scans,
//! ListOffsets decoding, record validation and decompression, retention, topic files.
//!
//! Jobs wait in one bounded queue (`queued.max.requests`): a connection that submits while it is
//! full waits, which is the back-pressure. A job that is slow (a stalled disk) holds one thread;
//! the others keep serving, and no async worker ever blocks, so connections that do not touch
//! that disk are not stalled. Work for one partition is ordered by the partition's lock, not by
//! the queue.
//!
//! Why a pool of our own rather than `tokio::task::spawn_blocking`: the blocking pool grows to
//! hundreds of threads with an unbounded queue, so it has no back-pressure of its own, and it
//! measured slower for the small jobs that dominate here (BENCHMARKS.md, "I/O dispatch").

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::{oneshot, Semaphore};

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    static ON_POOL_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of an I/O pool's. Code that may wait for a partition's
/// replicas (directly, or for a lock held across such a wait) asserts it is not: the pool's
/// threads answer the follower fetches that wait depends on, so a pool full of such waits
/// stalls every partition of the broker until the waits time out.
pub(crate) fn on_pool_thread() -> bool {
    ON_POOL_THREAD.with(|on| on.get())
}

/// Why a job did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the I/O pool has stopped")]
    Stopped,
    #[error("an I/O job panicked (a bug; see the log)")]
    Panicked,
}

/// See the module documentation. The threads stop once the pool is dropped and the jobs
/// already queued have run.
#[derive(Debug)]
pub struct IoPool {
    queue: Arc<JobQueue>,
    /// One permit per free place in the queue: submitters wait here, not on a lock.
    room: Arc<Semaphore>,
}

/// The jobs waiting for a thread. One condition variable wakes exactly one sleeping thread
/// per job: a job costs one wake-up, not a hand-over of a lock between threads.
#[derive(Default)]
struct JobQueue {
    state: Mutex<QueueState>,
    job_ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    stopped: bool,
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue").finish_non_exhaustive()
    }
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Jobs run outside the lock and catch their panics: a poisoned lock held only a queue.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().jobs.push_back(job);
        self.job_ready.notify_one();
    }

    /// The next job, waiting for one; `None` once the pool stopped and the queue is empty.
    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.stopped {
                return None;
            }
            state = self
                .job_ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.job_ready.notify_all();
    }
}

impl IoPool {
    /// Starts `threads` threads sharing a queue of at most `queue_max` waiting jobs.
    pub fn new(threads: usize, queue_max: usize) -> std::io::Result<Self> {
        let queue = Arc::new(JobQueue::default());
        for index in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("runnel-io-{index}"))
                .spawn(move || {
                    ON_POOL_THREAD.with(|on| on.set(true));
                    while let Some(job) = queue.next() {
                        job();
                    }
                })?;
        }
        Ok(IoPool {
            queue,
            room: Arc::new(Semaphore::new(queue_max.max(1))),
        })
    }

    /// Runs `job` on a pool thread and waits for its result, without blocking the caller's
    /// async worker. Waits for room in the queue first.
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let place = Arc::clone(&self.room)
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        let wrapped: Job = Box::new(move || {
            // Taken off the queue: its place is free for the next submitter.
            drop(place);
            // A panic is a bug; it is logged by the panic hook and reported to the waiter. A
            // partition whose lock it poisoned stops the process when next locked.
            let _ = reply.send(catch_unwind(AssertUnwindSafe(job)));
        });
        self.queue.push(wrapped);
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(PoolError::Panicked),
            Err(_) => Err(PoolError::Stopped),
        }
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        self.room.close();
        self.queue.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_off_the_caller_and_return_their_results() {
        let pool = IoPool::new(2, 4).unwrap();
        let caller = std::thread::current().id();
        let (value, thread) = pool
            .run(|| (21 * 2, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, caller);
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_pool_survives() {
        let pool = IoPool::new(1, 4).unwrap();
        assert_eq!(
            pool.run(|| -> () { panic!("a bug") }).await,
            Err(PoolError::Panicked)
        );
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_job_does_not_stall_the_others() {
        let pool = Arc::new(IoPool::new(2, 4).unwrap());
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let slow = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(move || wait.recv().is_ok()).await })
        };
        let quick = tokio::time::timeout(std::time::Duration::from_secs(5), pool.run(|| 1)).await;
        assert_eq!(quick.unwrap(), Ok(1));
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap(), Ok(true));
    }
}
