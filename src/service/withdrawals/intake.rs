//! Writing new withdrawals, in batches (group commit).
//!
//! Every new withdrawal, once priced and checked against the operator gate, is queued here. One
//! task per process takes whatever is queued (up to [`MAX_BATCH`]) and writes it in one
//! transaction. First what needs no lock: replays (answered as the first request was), the
//! limits and tiers that apply, the address book's ids, ids for the new withdrawals. Then each
//! balance, each limit window and each audit chain is locked once, in that order (all of it one
//! statement on PostgreSQL, see [`crate::db::intake`]); the holds, limits and approval
//! requirements are worked out here in arrival order exactly as one-by-one creation would; and
//! every row (withdrawals, ledger entries and balances, limit usage, timeline events, outbox
//! jobs, audit records) is written by one [`Writes`]: a single statement on PostgreSQL, whose
//! text does not change with the batch. While a batch is written the next one gathers, so a
//! single request waits for no one and a busy service writes dozens per transaction. On
//! PostgreSQL a batch takes four round trips (begin, read and lock, write, commit) and holds
//! the locks for three of them, instead of a dozen per withdrawal, which is what lets
//! withdrawals of one project, which all share its balance row, pass at thousands a second.
//!
//! Each withdrawal still gets its own answer: one refused for its balance is left out of the
//! batch, as it would have been alone. If the batch's transaction fails as a whole (a
//! `foreign_id` taken meanwhile by another instance, the same `foreign_id` twice in one batch,
//! an error of the statements), nothing of it was written and each withdrawal is written again on its
//! own: the same code with a batch of one, whose errors are that request's own. Only when the
//! database is unreachable does every request of the batch get that answer at once (one by
//! one, each would wait for the connection again).

use super::{Basis, Rules, balance_not_enough, effects, replay};
use crate::db::audit::{self, Actor, Origin};
use crate::db::balances::{self, Balance, BalanceError, LedgerKind};
use crate::db::batch::Writes;
use crate::db::exchanges;
use crate::db::intake as dbintake;
use crate::db::jobs;
use crate::db::limits;
use crate::db::projects::Project;
use crate::db::withdrawals::{self as wdb, AddressKey, NewEvent, Withdrawal, WithdrawalExchange};
use crate::db::{DbError, Tx};
use crate::domain::policy::{ApprovalRequirement, Scope, Usage};
use crate::domain::withdrawal::{NewWithdrawal, Status};
use crate::error::ApiError;
use crate::service::alerts;
use crate::state::AppState;
use futures_util::FutureExt;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, PoisonError};
use tokio::sync::oneshot;

/// The most withdrawals written in one transaction.
pub const MAX_BATCH: usize = 64;

/// A new withdrawal, priced and checked, waiting to be written.
pub(crate) struct Request {
    pub project: Project,
    pub initiator: Actor,
    pub scope: Scope,
    pub req: NewWithdrawal,
    pub basis: Basis,
    pub origin: Origin,
    pub fingerprint: String,
}

type Answer = Result<Withdrawal, ApiError>;

/// The queue of withdrawals to write, one per process (in [`AppState`]).
pub struct Intake {
    queue: Mutex<Queue>,
    /// Where the writing task runs: the runtime the service started on, which outlives any
    /// one HTTP worker's.
    runtime: Option<tokio::runtime::Handle>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Request, oneshot::Sender<Answer>)>,
    /// A task is writing (and will look at `waiting` again before it stops).
    writing: bool,
    /// The size of the batch being written.
    in_batch: usize,
}

impl Intake {
    pub fn new() -> Intake {
        Intake {
            queue: Mutex::default(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Queues `request` and waits for its answer. The write happens in its own task: a caller
    /// that goes away does not cancel it (nor anyone else's).
    pub(crate) async fn submit(&self, state: &AppState, request: Request) -> Answer {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.waiting.push_back((request, reply));
            !std::mem::replace(&mut q.writing, true)
        };
        if start {
            let task = write_queued(state.clone());
            match &self.runtime {
                Some(rt) => drop(rt.spawn(task)),
                None => drop(tokio::spawn(task)),
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(ApiError::internal(
                "the withdrawal could not be written; nothing was created",
            ))
        })
    }

    /// How many withdrawals wait to be written or are being written.
    pub fn unanswered(&self) -> usize {
        let q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.waiting.len() + q.in_batch
    }

    /// The next batch, or `None` (and the writer stops) when nothing waits.
    fn next_batch(&self) -> Option<Vec<(Request, oneshot::Sender<Answer>)>> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = q.waiting.len().min(MAX_BATCH);
        q.in_batch = n;
        if n == 0 {
            q.writing = false;
            return None;
        }
        Some(q.waiting.drain(..n).collect())
    }
}

impl Default for Intake {
    fn default() -> Self {
        Intake::new()
    }
}

/// Batches written one after another on the same held connections before they go back to
/// their pools (see [`dbintake::Held`]). On SQLite the worker's payouts wait
/// for the one writer connection meanwhile: at most this many batches, a few tens of
/// milliseconds.
const BATCHES_PER_CONNECTION: usize = 8;

/// The writing task: batches until the queue is empty, on connections it holds for up to
/// [`BATCHES_PER_CONNECTION`] of them (and gives back at once after an error).
async fn write_queued(state: AppState) {
    let mut held = dbintake::Held::default();
    let mut batches_on_held = 0;
    while let Some(batch) = state.intake.next_batch() {
        if held.is_empty() || batches_on_held == BATCHES_PER_CONNECTION {
            held = dbintake::Held::default();
            batches_on_held = 0;
        }
        batches_on_held += 1;
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        // A panic must not stop intake for good: the batch's callers get an error (their
        // senders drop; the transaction, if open, rolls back) and the next batch goes on.
        let written = AssertUnwindSafe(write_answering(&state, &requests, &mut held))
            .catch_unwind()
            .await;
        if written.is_err() {
            held = dbintake::Held::default();
        }
        match written {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(_) => tracing::error!(
                withdrawals = requests.len(),
                "writing a batch of withdrawals panicked; none of them was created"
            ),
        }
    }
}

/// Writes the batch and answers each request; on a failure of the whole batch, writes each
/// request on its own.
async fn write_answering(
    state: &AppState,
    requests: &[Request],
    held: &mut dbintake::Held,
) -> Vec<Answer> {
    let all: Vec<&Request> = requests.iter().collect();
    let failed = match write_fresh(state, &all, held).await {
        Ok(answers) => return answers,
        Err(e) => e,
    };
    if requests.len() == 1 {
        return vec![alone_failed(state, &requests[0], failed).await];
    }
    match failed {
        // The database is away: one by one would only wait for it again, once per request.
        DbError::Unavailable(e) => {
            let e = e.to_string();
            return requests
                .iter()
                .map(|_| Err(ApiError::Unavailable(e.clone())))
                .collect();
        }
        e => tracing::info!(
            withdrawals = requests.len(),
            error = %e,
            "a batch of withdrawals failed as a whole; writing them one by one"
        ),
    }
    let mut answers = Vec::with_capacity(requests.len());
    for r in requests {
        answers.push(match write_fresh(state, &[r], held).await {
            Ok(mut one) => one
                .pop()
                .unwrap_or_else(|| Err(ApiError::internal("no answer"))),
            Err(e) => alone_failed(state, r, e).await,
        });
    }
    answers
}

/// [`write`], done again (a few times) when what it read before taking its locks changed
/// before it wrote: an address book entry that another writer created meanwhile. After an
/// error the held connection goes back to the pool (which checks it) and the next write
/// takes one afresh.
async fn write_fresh(
    state: &AppState,
    batch: &[&Request],
    held: &mut dbintake::Held,
) -> Result<Vec<Answer>, DbError> {
    let mut tries = 0;
    loop {
        let done = write(state, batch, held).await;
        if done.is_err() {
            *held = dbintake::Held::default();
        }
        match done {
            Err(e) if e.is_stale() && tries < 3 => tries += 1,
            done => return done,
        }
    }
}

/// The answer for a request whose own transaction failed: a `foreign_id` created meanwhile is
/// a replay (answered as the first request was); anything else is the error.
async fn alone_failed(state: &AppState, r: &Request, e: DbError) -> Answer {
    if !e.is_unique_violation() {
        return Err(e.into());
    }
    let existing = wdb::by_foreign_id(&state.db, &r.project.id, &r.req.foreign_id)
        .await?
        .ok_or_else(|| ApiError::internal("withdrawal vanished after conflict"))?;
    replay(existing, &r.fingerprint)
}

/// One request's plan, worked out under the batch's locks.
struct Planned<'a> {
    r: &'a Request,
    status: Status,
    requirement: ApprovalRequirement,
}

/// A balance taken by the batch, and the holds placed on it, in order.
struct Held {
    read: Balance,
    available: Decimal,
    holds: Vec<(Decimal, usize)>,
}

/// A limit window pair (hour, day) taken by the batch: as read, and as it stands now; with
/// the limits and tiers that apply to it.
struct Window {
    read: [Usage; 2],
    used: [Usage; 2],
    rules: Rules,
}

/// Writes `batch` in one transaction. `Ok` holds one answer per request (a balance refusal
/// is an answer); `Err` means nothing was written.
///
/// The order keeps row locks short: everything that needs no lock is read first (replays,
/// limits and tiers, address book ids, new ids); then the balances, the limit windows and
/// the audit chains are locked, in that order (on PostgreSQL, all of that is one statement:
/// [`dbintake::start`]); then every row is written by one [`Writes`] (one statement on
/// PostgreSQL) and the transaction commits.
///
/// Replays are answered before any lock. Were a replay left for the `foreign_id` key to
/// catch, its insert would wait for whoever is updating the existing withdrawal (the worker,
/// paying it out) while holding the audit chain that transaction needs next: a deadlock.
async fn write(
    state: &AppState,
    batch: &[&Request],
    held: &mut dbintake::Held,
) -> Result<Vec<Answer>, DbError> {
    let now = state.now();
    let (hour, day) = limits::buckets(now);
    // What to read and lock, each list sorted and without repeats.
    let mut projects: Vec<&str> = batch.iter().map(|r| r.project.id.as_str()).collect();
    projects.sort_unstable();
    projects.dedup();
    let mut rule_keys: Vec<(&str, Scope, &str)> = batch
        .iter()
        .map(|r| (r.project.id.as_str(), r.scope, r.req.payout.code()))
        .collect();
    rule_keys.sort_unstable();
    rule_keys.dedup();
    let mut keys: Vec<AddressKey> = batch.iter().map(|r| address_key(r)).collect();
    // Sorted: two instances upserting the same entries take their rows in the same order.
    keys.sort_unstable_by_key(|k| (k.project_id, k.currency, k.address, k.tag));
    keys.dedup();
    let mut balance_keys: Vec<(&str, &str)> = batch
        .iter()
        .map(|r| {
            let held_currency = r.basis.priced.price.held_currency.code();
            (r.project.id.as_str(), held_currency)
        })
        .collect();
    balance_keys.sort_unstable();
    balance_keys.dedup();
    let reads = dbintake::Keys {
        foreign_ids: (batch.iter())
            .map(|r| (r.project.id.as_str(), r.req.foreign_id.as_str()))
            .collect(),
        rules: rule_keys.clone(),
        addresses: keys.clone(),
        new_ids: batch.len(),
        balances: balance_keys.clone(),
        windows: rule_keys.clone(),
        buckets: [hour.as_str(), day.as_str()],
        chains: projects.clone(),
    };
    let (mut tx, started) = dbintake::start(&state.db, held, &reads).await?;

    // Replays: a `foreign_id` already taken gets the answer the first request got.
    let mut answers: Vec<Option<Answer>> = batch.iter().map(|_| None).collect();
    for existing in started.replays {
        for (i, r) in batch.iter().enumerate() {
            if r.project.id == existing.project_id && r.req.foreign_id == existing.foreign_id {
                answers[i] = Some(replay(existing.clone(), &r.fingerprint));
            }
        }
    }
    // The limits and tiers that apply.
    let mut rules: BTreeMap<(&str, Scope, &str), Rules> = BTreeMap::new();
    for (&key, limits_read) in rule_keys.iter().zip(started.limits) {
        let tiers = (started.tiers.iter())
            .filter(|(project_id, _, _)| project_id == key.0)
            .map(|&(_, scope, tier)| (scope, tier))
            .collect();
        rules.insert(key, Rules::new(limits_read, tiers, key.1));
    }
    let address_ids = started.address_ids;
    let mut new_ids = started.new_ids.into_iter();

    let mut balances: BTreeMap<(&str, &str), Option<Held>> = BTreeMap::new();
    for (&key, read) in balance_keys.iter().zip(started.balances) {
        let held = read.map(|read| Held {
            read,
            available: read.available,
            holds: Vec::new(),
        });
        balances.insert(key, held);
    }

    // Holds first, as one-by-one creation refuses before looking at limits.
    let mut accepted = Vec::new();
    for (i, r) in batch.iter().enumerate() {
        if answers[i].is_some() {
            continue;
        }
        let price = &r.basis.priced.price;
        let key = (r.project.id.as_str(), price.held_currency.code());
        match balances.get_mut(&key).and_then(Option::as_mut) {
            Some(b) if b.available >= price.held => {
                b.available -= price.held;
                b.holds.push((price.held, i));
                accepted.push(i);
            }
            _ => answers[i] = Some(Err(balance_not_enough())),
        }
    }
    let mut windows: BTreeMap<(&str, Scope, &str), Window> = BTreeMap::new();
    for (&key, read) in rule_keys.iter().zip(started.usages) {
        let rules = rules
            .remove(&key)
            .ok_or_else(|| crate::db::corrupt("limits", "rules not read"))?;
        windows.insert(
            key,
            Window {
                read,
                used: read,
                rules,
            },
        );
    }

    let mut planned = Vec::with_capacity(accepted.len());
    for &i in &accepted {
        let r = batch[i];
        let key = (r.project.id.as_str(), r.scope, r.req.payout.code());
        let Some(window) = windows.get_mut(&key) else {
            return Err(crate::db::corrupt("limit_usage", "window not taken"));
        };
        let [used_hour, used_day] = window.used;
        let requirement = r.basis.requirement(&window.rules, used_hour, used_day);
        let status = if requirement.is_needed() {
            Status::Pending
        } else {
            Status::Approved
        };
        let (amount, base_value) = (r.basis.priced.price.received, r.basis.priced.base_value);
        window.used = window.used.map(|u| Usage {
            amount: u.amount + amount,
            base_amount: u.base_amount + base_value,
        });
        planned.push(Planned {
            r,
            status,
            requirement,
        });
    }

    let expiry_ms = i64::try_from(state.settings.withdrawals.pending_expiry_hours).unwrap_or(24)
        * crate::clock::HOUR_MS;
    let mut rows = Vec::with_capacity(planned.len());
    let mut used_keys: Vec<usize> = Vec::new();
    for p in &planned {
        let exchange = match p.r.basis.priced.price.exchange {
            Some(c) => Some(record_exchange(&mut tx, p.r, c, now).await?),
            None => None,
        };
        let k = address_key(p.r);
        let at = keys
            .iter()
            .position(|x| *x == k)
            .ok_or_else(|| crate::db::corrupt("payout_addresses", "address not looked up"))?;
        if !used_keys.contains(&at) {
            used_keys.push(at);
        }
        let mut w = withdrawal(p, exchange, address_ids[at], &hour, &day, expiry_ms, now);
        w.id = new_ids
            .next()
            .ok_or_else(|| crate::db::corrupt("withdrawals.id", "too few ids allocated"))?;
        rows.push(w);
    }
    let row_of = |i: usize| {
        accepted
            .iter()
            .position(|&a| a == i)
            .map(|at| &rows[at])
            .ok_or_else(|| crate::db::corrupt("withdrawals", "hold without a withdrawal"))
    };

    // The audit records, on the chains locked last.
    let records: Vec<audit::Entry> = rows
        .iter()
        .zip(&planned)
        .map(|(w, p)| created_record(w, p.r))
        .collect();
    let mut chains = Vec::new();
    for head in started.heads {
        let mine: Vec<&audit::Entry> = records
            .iter()
            .filter(|e| e.project_id == head.project_id)
            .collect();
        if !mine.is_empty() {
            chains.push((head.reserve(mine.len()), mine));
        }
    }

    let mut writes = Writes::new(crate::db::engine_of(&tx));
    used_keys.sort_unstable();
    let used: Vec<AddressKey> = used_keys.iter().map(|&at| keys[at]).collect();
    let used_ids: Vec<i64> = used_keys.iter().map(|&at| address_ids[at]).collect();
    wdb::push_addresses(&mut writes, &used, &used_ids, now);
    wdb::push_inserts(&mut writes, &rows.iter().collect::<Vec<_>>());
    for (&(project_id, currency), b) in &balances {
        let Some(b) = b else { continue };
        if b.holds.is_empty() {
            continue;
        }
        let holds = b
            .holds
            .iter()
            .map(|&(amount, i)| Ok((LedgerKind::Hold, amount, row_of(i)?.id)))
            .collect::<Result<Vec<_>, DbError>>()?;
        balances::push_moves(&mut writes, project_id, currency, b.read, &holds, now).map_err(
            |e| match e {
                BalanceError::Db(d) => d,
                BalanceError::Insufficient => {
                    crate::db::corrupt("balances", "holds beyond the balance read")
                }
            },
        )?;
    }
    for (&(project_id, scope, currency), w) in &windows {
        if w.used != w.read {
            limits::push_usages(
                &mut writes,
                project_id,
                scope,
                currency,
                reads.buckets,
                w.used,
            );
        }
    }
    let notes: Vec<String> = rows
        .iter()
        .map(|w| {
            let reasons = w.requirement.reasons.iter().map(|r| r.describe());
            reasons.collect::<Vec<_>>().join("; ")
        })
        .collect();
    let events: Vec<NewEvent> = rows
        .iter()
        .zip(&planned)
        .zip(&notes)
        .map(|((w, p), note)| NewEvent {
            withdrawal_id: w.id,
            from: None,
            to: w.status,
            actor_kind: p.r.initiator.kind(),
            actor_id: p.r.initiator.id(),
            note,
        })
        .collect();
    wdb::push_events(&mut writes, &events, now);
    let outbox: Vec<jobs::NewJob> = rows.iter().flat_map(|w| effects(state, w, now)).collect();
    jobs::push_jobs(&mut writes, &outbox, now);
    for (head, mine) in chains {
        audit::push_chain(&mut writes, head, &mine, now);
    }
    writes.run(&mut tx).await?;
    for w in rows.iter().filter(|w| w.status == Status::Pending) {
        alerts::on_pending(&mut tx, state, w, now).await?;
    }
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    if !rows.is_empty() {
        state.metrics.intake_batch(rows.len());
    }

    let mut rows = rows.into_iter();
    Ok(answers
        .into_iter()
        .map(|a| match a {
            Some(refused) => refused,
            None => rows
                .next()
                .ok_or_else(|| ApiError::internal("withdrawal missing from its batch")),
        })
        .collect())
}

fn address_key(r: &Request) -> AddressKey<'_> {
    AddressKey {
        project_id: &r.project.id,
        currency: r.req.payout.code(),
        address: r.req.address.as_str(),
        tag: r.req.tag.as_deref().unwrap_or(""),
    }
}

async fn record_exchange(
    tx: &mut Tx<'_>,
    r: &Request,
    c: crate::domain::exchange::Conversion,
    now: i64,
) -> Result<WithdrawalExchange, DbError> {
    let price = &r.basis.priced.price;
    let id = exchanges::insert(
        tx,
        &exchanges::NewExchange {
            project_id: &r.project.id,
            kind: "withdrawal",
            quote_id: None,
            from_currency: c.from.code(),
            to_currency: c.to.code(),
            from_amount: c.from_amount,
            to_amount: price.received,
            rate: c.rate,
            fee: price.total_fee(),
        },
        now,
    )
    .await?;
    Ok(WithdrawalExchange {
        id,
        from_currency: c.from.code().to_string(),
        from_amount: c.from_amount,
        rate: c.rate,
        fee: c.fee,
    })
}

/// The row for a planned withdrawal (its id is filled in once inserted).
fn withdrawal(
    p: &Planned,
    exchange: Option<WithdrawalExchange>,
    address_id: i64,
    hour: &str,
    day: &str,
    expiry_ms: i64,
    now: i64,
) -> Withdrawal {
    let (r, status) = (p.r, p.status);
    let priced = &r.basis.priced;
    Withdrawal {
        id: 0,
        project_id: r.project.id.clone(),
        foreign_id: r.req.foreign_id.clone(),
        fingerprint: r.fingerprint.clone(),
        scope: r.scope,
        initiator_kind: r.initiator.kind().to_string(),
        initiator_id: r.initiator.id().to_string(),
        currency: r.req.payout.code().to_string(),
        network: r.req.address.network().name().to_string(),
        amount: priced.price.received,
        fee: priced.price.network_fee,
        address: r.req.address.as_str().to_string(),
        tag: r.req.tag.clone(),
        end_user_reference: r.req.end_user_reference.clone(),
        base_currency: priced.base.code().to_string(),
        base_value: priced.base_value,
        rate: priced.payout_rate,
        status,
        initial_status: status,
        requirement: p.requirement.clone(),
        usage_hour: hour.to_string(),
        usage_day: day.to_string(),
        error: String::new(),
        txid: None,
        address_id,
        expires_at: (status == Status::Pending).then_some(now + expiry_ms),
        created_at: now,
        updated_at: now,
        exchange,
        rates_at: Some(priced.rates_at),
    }
}

fn created_record<'a>(w: &Withdrawal, r: &'a Request) -> audit::Entry<'a> {
    let price = &r.basis.priced.price;
    audit::Entry {
        project_id: &r.project.id,
        actor: &r.initiator,
        action: "withdrawal.created",
        subject: format!("withdrawal:{}", w.id),
        details: json!({
            "foreign_id": w.foreign_id, "currency": w.currency, "amount": w.amount.to_string(),
            "fee": w.total_fee().to_string(), "held_currency": price.held_currency.code(),
            "held": price.held.to_string(), "exchange_rate": w.exchange.as_ref().map(|x| x.rate.to_string()),
            "address": w.address, "status": w.status.as_str(), "scope": w.scope.as_str(),
            "reasons": w.requirement.reasons,
        }),
        origin: &r.origin,
    }
}
