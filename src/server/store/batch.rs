//! Group commit: requests that arrive while a commit is under way share the next one. Each runs
//! inside its own SAVEPOINT of one `BEGIN IMMEDIATE` transaction, so one request's failure rolls
//! back only its own writes; its row, audit entry and event still commit together, and the hash
//! chain stays in order. With synchronous=FULL a commit is the costliest step of a request, so
//! sharing it is what lets 32 concurrent clients keep their latency low.
//!
//! On PostgreSQL the shared transaction is a shared writer (`Store::write_shared`): the batches
//! of several replicas run side by side and line up only to append their audit entries and
//! events at the commit, which is what lets throughput grow with replicas.

use super::{DbError, Store, Tx};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// The work of one request inside the shared transaction. It reports its own result through
/// what it captured; an `Err` rolls back its savepoint.
pub type Job = Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<(), DbError>> + Send>;

/// Whether the job's writes are committed, and whether the batch wrote events.
pub type Committed = Result<bool, String>;

/// The most jobs one commit carries.
const MAX_BATCH: usize = 16;

#[derive(Clone)]
pub struct Batcher {
    jobs: mpsc::UnboundedSender<(Job, oneshot::Sender<Committed>)>,
    /// Transactions the writer has finished (committed or rolled back), for tests and metrics.
    batches: Arc<AtomicU64>,
}

impl Batcher {
    /// Starts the writer task that drains queued jobs into shared commits.
    pub fn start(store: Store) -> (Batcher, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        let batches = Arc::new(AtomicU64::new(0));
        (
            Batcher {
                jobs,
                batches: batches.clone(),
            },
            tokio::spawn(run(store, rx, batches)),
        )
    }

    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Runs `job` in the next shared transaction and waits for its commit.
    pub async fn run(&self, job: Job) -> Committed {
        let (done, committed) = oneshot::channel();
        self.jobs
            .send((job, done))
            .map_err(|_| "the server is shutting down".to_string())?;
        committed
            .await
            .unwrap_or_else(|_| Err("the server is shutting down".into()))
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<(Job, oneshot::Sender<Committed>)>,
    batches: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut tx = match store.write_shared().await {
            Ok(tx) => tx,
            Err(e) => {
                for (_, done) in batch {
                    let _ = done.send(Err(e.to_string()));
                }
                continue;
            }
        };
        let alone = batch.len() == 1;
        let mut results = Vec::with_capacity(batch.len());
        for (job, done) in batch {
            let outcome = if alone {
                // Nothing to protect from: the transaction itself is the savepoint.
                job(&mut tx).await.map_err(|e| e.to_string())
            } else {
                savepoint(&mut tx, job).await
            };
            results.push((done, outcome));
        }
        let failed_alone = alone && results.iter().any(|(_, r)| r.is_err());
        let committed = if failed_alone {
            drop(tx);
            Ok(false)
        } else {
            tx.commit().await.map_err(|e| e.to_string())
        };
        batches.fetch_add(1, Ordering::Relaxed);
        for (done, outcome) in results {
            let _ = done.send(match &committed {
                Ok(events) => outcome.map(|()| *events),
                Err(e) => Err(e.clone()),
            });
        }
    }
}

async fn savepoint(tx: &mut Tx, job: Job) -> Result<(), String> {
    let mark = tx.pending_len();
    sqlx::query("SAVEPOINT job")
        .execute(tx.conn())
        .await
        .map_err(|e| e.to_string())?;
    match job(tx).await {
        // Not released: the commit ends it with the transaction, and a batch holds at most
        // MAX_BATCH of them; releasing each would cost a round trip per request on PostgreSQL.
        // A later job's `ROLLBACK TO job` goes back to its own, the most recent of that name.
        Ok(()) => Ok(()),
        Err(e) => {
            // Its audit entries go with its writes.
            tx.pending_truncate(mark);
            let _ = sqlx::query("ROLLBACK TO job").execute(tx.conn()).await;
            let _ = sqlx::query("RELEASE job").execute(tx.conn()).await;
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::audit_check::{Verdict, verify};

    fn append(subject: &'static str, fail: bool) -> Job {
        Box::new(move |tx: &mut Tx| {
            Box::pin(async move {
                let now = chrono::Utc::now();
                tx.audit(now, "t", "test", subject, &serde_json::json!({}))
                    .await?;
                if fail {
                    return Err(DbError::Protocol("this job fails after writing".into()));
                }
                Ok(())
            })
        })
    }

    /// Three requests share one commit; the one that fails leaves nothing behind, and the
    /// others' audit entries chain as if it had never been.
    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_job_rolls_back_only_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("cb.db").display()))
            .await
            .unwrap();
        let (batcher, _task) = Batcher::start(store.clone());
        // Polled together before the writer runs, so they land in one batch.
        let (a, b, c) = tokio::join!(
            batcher.run(append("a", false)),
            batcher.run(append("b", true)),
            batcher.run(append("c", false)),
        );
        assert_eq!(
            batcher.batches(),
            1,
            "the three jobs shared one transaction"
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
        // The next batch continues the chain from the right head.
        batcher.run(append("d", false)).await.unwrap();
        assert!(matches!(
            verify(&store).await.unwrap(),
            Verdict::Intact { entries: 3, .. }
        ));
    }
}
