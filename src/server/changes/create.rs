//! Creating a change: the request's checks and idempotent replay here, its decision and writes
//! in a shared group commit with the requests that arrive with it (`store/batch.rs`): one batch
//! reads the policy once, looks up every request's conflicts in one statement and inserts them
//! in one, in rounds so that two requests on one target still see each other.

use super::quota;
use super::request::check;
use super::schedule::{self as sched};
use super::*;
use crate::domain::schedule::RunAt;
use crate::server::store::batch::{self, Batcher, Handler};
use crate::server::store::{DbError, LiveAsk};

/// What an Idempotency-Key stands for: the whole request (Stripe's rule), so a retry with the
/// same key and a different body, even only another reason, is refused instead of answered with
/// the first change.
fn fingerprint(req: &ChangeRequest) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(req).unwrap_or_default()))
}

/// Outcome of a create: the change, and whether it is a replay of an earlier request.
pub struct Created {
    pub change: Change,
    pub replayed: bool,
}

pub async fn create(
    state: &AppState,
    caller: &Operator,
    req: &ChangeRequest,
    idempotency_key: Option<&str>,
) -> ServiceResult<Created> {
    crate::server::error::may(crate::domain::Act::Request, caller)?;
    let c = check(state, req, true)?;
    let fp = fingerprint(req);
    if let Some(key) = idempotency_key
        && let Some(done) = replay(state, caller, key, &fp).await?
    {
        return Ok(done);
    }
    // The decision and the writes run in a shared commit with other requests (group commit).
    let job = CreateJob {
        requester: caller.clone(),
        spec: c.spec.clone(),
        ticket: c.ticket,
        target: c.target,
        params: c.params,
        reason: c.reason,
        run_at: c.run_at,
        key: idempotency_key.map(str::to_string),
        fingerprint: fp.clone(),
    };
    match state.batcher.run(job).await {
        Ok((Ok((change, run_now)), events)) => {
            if events {
                state.events.wake();
            }
            state.metrics.changes_requested.inc();
            let change = if run_now {
                start_and_wait(state, change).await?
            } else {
                change
            };
            Ok(Created {
                change,
                replayed: false,
            })
        }
        Ok((Err(e), events)) => {
            if events {
                state.events.wake();
            }
            if let ServiceError::IdempotencyRace = e {
                let key = idempotency_key.unwrap_or_default();
                return replay(state, caller, key, &fp)
                    .await?
                    .ok_or(ServiceError::IdempotencyRace);
            }
            Err(e)
        }
        Err(why) => {
            tracing::error!(error = %why, "recording a change failed");
            Err(ServiceError::Unavailable("the server could not record the change in its database; retry with the same Idempotency-Key".into()))
        }
    }
}

/// A change request that passed its input checks, waiting for the next shared commit.
pub struct CreateJob {
    requester: Operator,
    spec: ActionSpec,
    ticket: Ticket,
    target: String,
    params: BTreeMap<String, String>,
    reason: String,
    run_at: Option<RunAt>,
    key: Option<String>,
    fingerprint: String,
}

/// What a request gets from its batch: the change and whether it runs now, or why not.
pub type CreateOutcome = ServiceResult<(Change, bool)>;

/// The batcher of change requests (`AppState::batcher`).
pub type CreateBatcher = Batcher<CreateJob, CreateOutcome>;

/// The batch handler that [`create`]'s jobs run in (started with the server).
pub fn create_handler(state: AppState) -> Handler<CreateJob, CreateOutcome> {
    batch::handler(move |tx: &mut Tx, jobs: &[CreateJob]| {
        let state = state.clone();
        Box::pin(async move { create_batch(&state, tx, jobs).await })
    })
}

/// A job's answer that is not a database failure; a database failure rolls the batch back
/// (and `store/batch.rs` runs each job again alone).
fn answer(e: ServiceError) -> Result<ServiceError, DbError> {
    match e {
        ServiceError::Storage(db) => Err(db),
        other => Ok(other),
    }
}

/// A job that got past its decision, on its way to the conflict check and the insert.
struct Going<'a> {
    job: &'a CreateJob,
    slot: usize,
    run_at: Option<DateTime<Utc>>,
    d: Decision,
    mine: crate::domain::schedule::Period,
}

/// The requests of one batch, in one transaction and in a handful of statements whatever their
/// number: the policy's reads once, then per round one conflict lookup for all and one
/// multi-row insert. Two requests on one target go in successive rounds, so the later one's
/// lookup sees the earlier one, as it would have in a batch of its own.
async fn create_batch(
    state: &AppState,
    tx: &mut Tx,
    jobs: &[CreateJob],
) -> Result<Vec<CreateOutcome>, DbError> {
    let now = state.clock.now();
    let mut out: Vec<Option<CreateOutcome>> = jobs.iter().map(|_| None).collect();
    // Nothing a decision reads changes while this transaction is open: writes to freezes, the
    // pause and incidents take the write lock exclusively (`Store::write`).
    let (stored, pause, _) = state.store.policy_context(tx.conn(), "").await?;
    let freezes = with_configured(state, stored);
    let mut going = Vec::with_capacity(jobs.len());
    for (slot, job) in jobs.iter().enumerate() {
        match judge(state, tx, job, now, &freezes, pause.as_ref()).await? {
            Ok((run_at, d)) => going.push(Going {
                mine: sched::period(state, run_at, &d, now),
                job,
                slot,
                run_at,
                d,
            }),
            Err(refusal) => out[slot] = Some(Err(refusal)),
        }
    }
    let mut open = open_by_requesters(tx, &going).await?;
    if sched::conflicts_block(state) {
        let targets: Vec<&str> = going.iter().map(|g| g.job.target.as_str()).collect();
        tx.targets_lock(&targets).await?;
    }
    while !going.is_empty() {
        // This round: the first request on each target; the rest wait for the next round.
        let mut round = Vec::new();
        let mut later = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for g in going {
            if seen.insert(g.job.target.as_str()) {
                round.push(g);
            } else {
                later.push(g);
            }
        }
        going = later;
        insert_round(state, tx, round, now, &mut open, &mut out).await?;
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| DbError::Protocol("a request of the batch got no answer".into())))
        .collect()
}

/// What the requesters of a batch have open, for their quotas (`quota.rs`), read after locking
/// them across replicas so that it stays true until the batch commits. Each request is counted
/// once it has passed its conflict check (`insert_round`), in arrival order.
async fn open_by_requesters(
    tx: &mut Tx,
    going: &[Going<'_>],
) -> Result<std::collections::BTreeMap<String, crate::server::store::OpenChanges>, DbError> {
    let names: Vec<&str> = going
        .iter()
        .map(|g| g.job.requester.name.as_str())
        .collect();
    tx.requesters_lock(&names).await?;
    tx.changes_open_by(&names).await
}

/// A request's time and decision, or its refusal (a blocked one is audited).
async fn judge(
    state: &AppState,
    tx: &mut Tx,
    job: &CreateJob,
    now: DateTime<Utc>,
    freezes: &[Freeze],
    pause: Option<&crate::domain::Pause>,
) -> Result<Result<(Option<DateTime<Utc>>, Decision), ServiceError>, DbError> {
    let run_at = match sched::resolve_run_at(state, tx.conn(), &job.spec, job.run_at, now).await {
        Ok(t) => t,
        Err(e) => return answer(e).map(Err),
    };
    // Only an incident ticket names an incident: its own read.
    let incident = if job.ticket.kind == crate::domain::ticket::TicketKind::Incident {
        let (_, _, incident) = state
            .store
            .policy_context(tx.conn(), job.ticket.as_str())
            .await?;
        incident
    } else {
        None
    };
    let reads = Reads {
        freezes,
        pause,
        incident: incident.as_ref(),
        escalated: None,
    };
    let d = decide_on(
        state,
        &reads,
        &job.spec,
        &job.ticket,
        &job.requester,
        run_at.unwrap_or(now),
    );
    if let Err(e) = sched::check_schedulable(run_at, &job.ticket, &d) {
        return answer(e).map(Err);
    }
    if d.decision == Outcome::Blocked {
        let why = serde_json::json!({ "rule": d.blocked_by, "reasons": d.reasons });
        audit_refusal(tx, now, job, why).await?;
        return Ok(Err(ServiceError::refused(refusal_message(&d))));
    }
    Ok(Ok((run_at, d)))
}

/// Audits a refused request (it changed nothing, so no event): what it asked for, and `why`
/// (the rule and its reasons) beside it.
async fn audit_refusal(
    tx: &mut Tx,
    now: DateTime<Utc>,
    job: &CreateJob,
    why: serde_json::Value,
) -> Result<(), DbError> {
    let mut detail = serde_json::json!({
        "action": job.spec.name, "ticket": job.ticket.as_str(), "target": job.target,
        "params": job.params,
    });
    if let (Some(detail), serde_json::Value::Object(why)) = (detail.as_object_mut(), why) {
        detail.extend(why);
    }
    tx.audit(
        now,
        &job.requester.name,
        "change.blocked",
        "change:-",
        &detail,
    )
    .await
}

/// One round of a batch: the conflict lookup of every request in it, then one insert for those
/// that go ahead (one each for those with an Idempotency-Key, whose unique index may answer),
/// their executions and their audit entries.
async fn insert_round(
    state: &AppState,
    tx: &mut Tx,
    round: Vec<Going<'_>>,
    now: DateTime<Utc>,
    open: &mut std::collections::BTreeMap<String, crate::server::store::OpenChanges>,
    out: &mut [Option<CreateOutcome>],
) -> Result<(), DbError> {
    let asks: Vec<LiveAsk> = round
        .iter()
        .map(|g| LiveAsk {
            target: &g.job.target,
            period: g.mine,
        })
        .collect();
    let live = tx
        .changes_live_on(&asks, state.config.verification.duration())
        .await?;
    let mut ahead = Vec::with_capacity(round.len());
    for (g, live) in round.into_iter().zip(live) {
        let job = g.job;
        let found = sched::conflicts_among(state, &job.spec, g.mine, &live, now);
        if let Some(refusal) = sched::blocked_by_conflicts(state, &found) {
            let why = serde_json::json!({
                "rule": "conflict", "reasons": [refusal], "conflicts": found,
            });
            audit_refusal(tx, now, job, why).await?;
            out[g.slot] = Some(Err(ServiceError::conflict(refusal)));
            continue;
        }
        let mine = open.entry(job.requester.name.clone()).or_default();
        if let Err(e) = quota::take(
            &state.config.server.quotas,
            mine,
            g.d.decision,
            g.run_at.is_some(),
        ) {
            out[g.slot] = Some(Err(e));
            continue;
        }
        ahead.push((g, found));
    }
    let news: Vec<NewChange> = ahead
        .iter()
        .map(|(g, found)| {
            let job = g.job;
            let what = What {
                spec: &job.spec,
                ticket: &job.ticket,
                target: &job.target,
                params: &job.params,
                reason: &job.reason,
            };
            let mut new = NewChange {
                idempotency_key: job.key.as_deref(),
                fingerprint: Some(&job.fingerprint),
                run_at: g.run_at,
                conflicts: found,
                expires_at: sched::expires_at(state, g.run_at, now),
                ..new_change(state, what, &job.requester, now, &g.d)
            };
            if g.run_at.is_some() && g.d.decision == Outcome::Execute {
                new.state = ChangeState::Scheduled;
            }
            new
        })
        .collect();
    // Keyless requests in one statement; a keyed one alone, so its unique index can answer.
    let mut stored: Vec<Option<Change>> = news.iter().map(|_| None).collect();
    let (mut plain, mut plain_at, mut keyed) = (Vec::new(), Vec::new(), Vec::new());
    for (i, new) in news.into_iter().enumerate() {
        if new.idempotency_key.is_some() {
            keyed.push((i, new));
        } else {
            plain_at.push(i);
            plain.push(new);
        }
    }
    for (i, change) in plain_at.into_iter().zip(tx.changes_insert(&plain).await?) {
        stored[i] = Some(change);
    }
    for (i, new) in keyed {
        match tx.change_insert(new).await {
            Ok(c) => stored[i] = Some(c),
            // Two retries with one key raced; the first one's change is the answer.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                out[ahead[i].0.slot] = Some(Err(ServiceError::IdempotencyRace));
            }
            Err(e) => return Err(e),
        }
    }
    for ((g, found), change) in ahead.iter().zip(stored) {
        let Some(change) = change else { continue };
        let job = g.job;
        let run_now = g.d.decision == Outcome::Execute && g.run_at.is_none();
        if run_now {
            tx.execution_claim(change.id, now).await?;
        }
        let mut summary = format!(
            "{} requested {}{} on {} ({}){}",
            job.requester.name,
            emergency_mark(&g.d),
            job.spec.name,
            job.target,
            job.ticket,
            match g.run_at {
                Some(t) => sched::outlook_scheduled(t, &g.d),
                None => outlook(run_now, &g.d),
            }
        );
        for c in found {
            summary.push_str(&format!("; {}", c.message));
        }
        record(
            tx,
            now,
            &job.requester.name,
            "change.requested",
            &change,
            summary,
        )
        .await?;
        out[g.slot] = Some(Ok((change, run_now)));
    }
    Ok(())
}

async fn replay(
    state: &AppState,
    caller: &Operator,
    key: &str,
    fp: &str,
) -> ServiceResult<Option<Created>> {
    match state
        .store
        .change_by_idempotency_key(&caller.name, key)
        .await?
    {
        Some((change, stored)) if stored.as_deref() == Some(fp) => Ok(Some(Created {
            change,
            replayed: true,
        })),
        Some((change, _)) => Err(ServiceError::invalid(format!(
            "Idempotency-Key '{key}' was already used for change #{} with a different request: \
             use a new key for a new request",
            change.id
        ))),
        None => Ok(None),
    }
}
