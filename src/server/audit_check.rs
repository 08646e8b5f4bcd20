//! `commandbridge audit verify`: recomputes the hash chain, over one snapshot of the log and its
//! head, so it holds while a server appends.

use crate::server::store::{AuditSnapshot, GENESIS_HASH, Store, audit_hash};

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        entries: i64,
        head: String,
    },
    /// The first entry that does not hold, and why.
    Broken {
        seq: i64,
        why: String,
    },
}

pub async fn verify(store: &Store) -> Result<Verdict, sqlx::Error> {
    let AuditSnapshot { rows, head } = store.audit_snapshot().await?;
    let mut prev = GENESIS_HASH.to_string();
    let mut expected_seq = 1;
    for (seq, at, actor, kind, subject, detail, prev_hash, hash) in rows {
        if seq != expected_seq {
            return Ok(Verdict::Broken {
                seq: expected_seq,
                why: format!("entry {expected_seq} is missing (deleted); the next entry is {seq}"),
            });
        }
        if prev_hash != prev {
            return Ok(Verdict::Broken {
                seq,
                why: format!(
                    "entry {seq} does not follow the entry before it (its prev_hash differs)"
                ),
            });
        }
        let recomputed = audit_hash(seq, at, &actor, &kind, &subject, &detail, &prev_hash);
        if recomputed != hash {
            return Ok(Verdict::Broken {
                seq,
                why: format!(
                    "entry {seq} ({kind} by {actor}) was altered: its hash does not match its contents"
                ),
            });
        }
        prev = hash;
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    match head {
        // Within one snapshot the head and the log agree exactly: the trigger that moves the
        // head runs in the statement that appends.
        Some((head_seq, _)) if head_seq > last => Ok(Verdict::Broken {
            seq: last + 1,
            why: format!(
                "the log ends at entry {last}, but the chain head records entry {head_seq}: \
                 the newest entries were deleted"
            ),
        }),
        Some((head_seq, _)) if head_seq < last => Ok(Verdict::Broken {
            seq: head_seq + 1,
            why: format!(
                "the chain head records entry {head_seq}, but the log goes on to entry {last}: \
                 the head was moved back"
            ),
        }),
        Some((_, head_hash)) if head_hash != prev => Ok(Verdict::Broken {
            seq: last,
            why: format!(
                "the chain head's hash is not entry {last}'s: the head or the entry was replaced"
            ),
        }),
        None if last > 0 => Ok(Verdict::Broken {
            seq: 1,
            why: "the chain head is missing".into(),
        }),
        _ => Ok(Verdict::Intact {
            entries: last,
            head: prev,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// A head moved back (hiding the newest entries from a check that trusts it) or replaced is
    /// named for what it is.
    #[tokio::test]
    async fn a_tampered_head_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cb.db").display());
        let store = Store::open(&url).await.unwrap();
        let now = chrono::Utc::now();
        for i in 0..3 {
            let mut tx = store.write().await.unwrap();
            tx.audit(now, "t", "test", &format!("n:{i}"), &serde_json::json!({}))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        for (statement, expected) in [
            ("UPDATE audit_head SET seq = 2", "moved back"),
            ("UPDATE audit_head SET seq = 3, hash = 'x'", "replaced"),
        ] {
            sqlx::query(statement).execute(&mut raw).await.unwrap();
            match verify(&store).await.unwrap() {
                Verdict::Broken { why, .. } => assert!(why.contains(expected), "{why}"),
                intact => panic!("{statement}: {intact:?}"),
            }
        }
    }
}
