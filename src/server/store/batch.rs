//! Group commit: requests that arrive while a commit is under way share the next one, and the
//! handler does their database work together, so a batch costs a handful of statements rather
//! than a handful per request (`changes/create.rs`: one policy read, one conflict lookup and
//! one multi-row insert for the whole batch). With synchronous=FULL on SQLite, and with the
//! round trips to PostgreSQL, those statements and the commit are the costliest part of a
//! request; sharing them is what lets 32 concurrent clients keep their latency low.
//!
//! A batch is one transaction, so each request's row, audit entry and event still commit
//! together and the hash chain stays in order. Should the handler fail (a database error), the
//! transaction is rolled back and each job is tried again alone, in its own transaction, so one
//! request's failure never fails the others. A failed commit is not retried: it may have
//! reached the database, and the clients' Idempotency-Key is the safe retry.
//!
//! On PostgreSQL the shared transaction is a shared writer (`Store::write_shared`): the batches
//! of several replicas run side by side and line up only to append their audit entries and
//! events at the commit, which is what lets throughput grow with replicas.

use super::{DbError, Store, Tx};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// The work of one batch inside its transaction: one result per job, in the jobs' order. An
/// `Err` rolls the batch back (and each job is tried again alone).
pub type Handler<J, R> = Arc<
    dyn for<'a> Fn(&'a mut Tx, &'a [J]) -> BoxFuture<'a, Result<Vec<R>, DbError>> + Send + Sync,
>;

/// A [`Handler`] from a closure (the bound lets the compiler see the closure's lifetimes).
pub fn handler<J, R, F>(f: F) -> Handler<J, R>
where
    F: for<'a> Fn(&'a mut Tx, &'a [J]) -> BoxFuture<'a, Result<Vec<R>, DbError>>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// A job's result once its transaction committed, and whether that commit wrote events; or why
/// nothing of it was committed.
pub type Committed<R> = Result<(R, bool), String>;

/// The most jobs one commit carries.
const MAX_BATCH: usize = 16;

type Queued<J, R> = (J, oneshot::Sender<Committed<R>>);

pub struct Batcher<J, R> {
    jobs: mpsc::UnboundedSender<Queued<J, R>>,
    /// Transactions the writer has finished (committed or rolled back), for tests and metrics.
    batches: Arc<AtomicU64>,
}

// Not derived: a derive would ask for `J: Clone, R: Clone`, which a sender does not need.
impl<J, R> Clone for Batcher<J, R> {
    fn clone(&self) -> Self {
        Batcher {
            jobs: self.jobs.clone(),
            batches: self.batches.clone(),
        }
    }
}

/// The receiving end, handed to [`Batcher::start`] once the handler can be built (the handler
/// usually needs the state that holds the [`Batcher`]).
pub struct Queue<J, R>(mpsc::UnboundedReceiver<Queued<J, R>>);

impl<J: Send + Sync + 'static, R: Send + 'static> Batcher<J, R> {
    pub fn channel() -> (Batcher<J, R>, Queue<J, R>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        (
            Batcher {
                jobs,
                batches: Arc::new(AtomicU64::new(0)),
            },
            Queue(rx),
        )
    }

    /// Starts the writer task that drains queued jobs into shared commits.
    pub fn start(
        &self,
        store: Store,
        queue: Queue<J, R>,
        handler: Handler<J, R>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(store, queue.0, handler, self.batches.clone()))
    }

    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Runs `job` in the next shared transaction and waits for its commit.
    pub async fn run(&self, job: J) -> Committed<R> {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send((job, done))
            .map_err(|_| "the server is shutting down".to_string())?;
        committed
            .await
            .unwrap_or_else(|_| Err("the server is shutting down".into()))
    }
}

async fn run<J: Send + Sync, R: Send>(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Queued<J, R>>,
    handler: Handler<J, R>,
    batches: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut queued = vec![first];
        while queued.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => queued.push(job),
                Err(_) => break,
            }
        }
        let (jobs, done): (Vec<J>, Vec<_>) = queued.into_iter().unzip();
        let outcome = attempt(&store, &handler, &jobs, &batches).await;
        match outcome {
            Attempt::Committed(results, events) => {
                for (done, r) in done.into_iter().zip(results) {
                    let _ = done.send(Ok((r, events)));
                }
            }
            Attempt::Failed(why) if jobs.len() > 1 => {
                tracing::warn!(error = %why, jobs = jobs.len(), "a batch failed; its jobs run again one by one");
                for (job, done) in jobs.iter().zip(done) {
                    let one = attempt(&store, &handler, std::slice::from_ref(job), &batches).await;
                    let _ = done.send(one.single());
                }
            }
            other => {
                if let Some(done) = done.into_iter().next() {
                    let _ = done.send(other.single());
                }
            }
        }
    }
}

enum Attempt<R> {
    Committed(Vec<R>, bool),
    /// Nothing was written: the handler failed and the transaction was rolled back.
    Failed(String),
    /// The commit failed: it may or may not have reached the database.
    CommitFailed(String),
}

impl<R> Attempt<R> {
    /// The outcome of a one-job attempt.
    fn single(self) -> Committed<R> {
        match self {
            Attempt::Committed(results, events) => results
                .into_iter()
                .next()
                .map(|r| (r, events))
                .ok_or_else(|| "the batch handler gave no result".to_string()),
            Attempt::Failed(why) | Attempt::CommitFailed(why) => Err(why),
        }
    }
}

async fn attempt<J: Send + Sync, R: Send>(
    store: &Store,
    handler: &Handler<J, R>,
    jobs: &[J],
    batches: &AtomicU64,
) -> Attempt<R> {
    let mut tx = match store.write_shared().await {
        Ok(tx) => tx,
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    let results = handler(&mut tx, jobs).await;
    batches.fetch_add(1, Ordering::Relaxed);
    let results = match results {
        Ok(r) if r.len() == jobs.len() => r,
        Ok(r) => {
            return Attempt::Failed(format!(
                "the batch handler gave {} results for {} jobs",
                r.len(),
                jobs.len()
            ));
        }
        // Dropping the transaction rolls it back.
        Err(e) => return Attempt::Failed(e.to_string()),
    };
    match tx.commit().await {
        Ok(events) => Attempt::Committed(results, events),
        Err(e) => Attempt::CommitFailed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::audit_check::{Verdict, verify};

    /// Each job appends one audit entry; a job named "b…" then fails, as a database error would.
    fn handler() -> Handler<&'static str, ()> {
        super::handler(|tx: &mut Tx, jobs: &[&'static str]| {
            Box::pin(async move {
                let now = chrono::Utc::now();
                for subject in jobs {
                    tx.audit(now, "t", "test", subject, &serde_json::json!({}))
                        .await?;
                    if subject.starts_with('b') {
                        return Err(DbError::Protocol("this job fails after writing".into()));
                    }
                }
                Ok(vec![(); jobs.len()])
            })
        })
    }

    /// Three requests share one transaction; when one fails, the others still commit (each
    /// alone), the failing one leaves nothing behind, and the chain is as if it had never been.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_job_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("cb.db").display()))
            .await
            .unwrap();
        let (batcher, queue) = Batcher::channel();
        let _task = batcher.start(store.clone(), queue, handler());
        // Polled together before the writer runs, so they land in one batch.
        let (a, b, c) = tokio::join!(batcher.run("a"), batcher.run("b"), batcher.run("c"));
        assert_eq!(
            batcher.batches(),
            4,
            "one shared transaction, then each of the three alone"
        );
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
        assert!(b.unwrap_err().contains("fails after writing"));
        let subjects: Vec<String> = store
            .audit_list(0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.subject)
            .collect();
        assert_eq!(subjects, ["a", "c"]);
        assert!(matches!(
            verify(&store).await.unwrap(),
            Verdict::Intact { entries: 2, .. }
        ));
        // Jobs that all succeed share one commit, and continue the chain from the right head.
        let (d, e) = tokio::join!(batcher.run("d"), batcher.run("e"));
        assert!(d.is_ok() && e.is_ok());
        assert_eq!(batcher.batches(), 5);
        assert!(matches!(
            verify(&store).await.unwrap(),
            Verdict::Intact { entries: 4, .. }
        ));
    }
}
