//! Creating withdrawals and moving them through their lifecycle. Every change is one
//! transaction: the conditional status write, the funds movement, the timeline event, the
//! outbox rows and the audit record commit together or not at all.
//!
//! A new withdrawal may first have to pass the project's operator gate
//! ([`crate::notify::gate`]); that network call happens before any transaction is opened.

use crate::clock::HOUR_MS;
use crate::db::audit::{self, Actor, Origin};
use crate::db::balances::{self, BalanceError, LedgerKind};
use crate::db::batch::Writes;
use crate::db::jobs::{self, JobKind, NewJob};
use crate::db::limits;
use crate::db::projects::Project;
use crate::db::withdrawals::{self as wdb, Withdrawal};
use crate::db::{DbError, Tx};
use crate::domain::policy::{Scope, Usage};
use crate::domain::withdrawal::{Event, FundsEffect, NewWithdrawal, Status, transition};
use crate::error::ApiError;
use crate::notify::callback::CallbackJob;
use crate::notify::gate::{self, GateInput, GateRefusal, WithdrawRequest};
use crate::service::alerts;
use crate::state::AppState;
use requirement::Basis;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;

mod intake;
mod requirement;
pub use intake::Intake;
use requirement::Rules;
pub use requirement::preview;

fn balance_not_enough() -> ApiError {
    ApiError::refused("balance_not_enough", "Not enough money on balance")
}

/// Creates a withdrawal, or returns the existing one when the same request (same
/// `foreign_id`, same fields) was made before, even concurrently.
///
/// When the project has an operator gate and the operator refuses (or gives no usable
/// answer), this returns [`ApiError::DeniedByOperator`]: nothing is created or held, only an
/// audit record `withdrawal.denied_by_operator` is written, and the same `foreign_id` can be
/// submitted again.
pub async fn create(
    state: &AppState,
    project: &Project,
    initiator: &Actor,
    scope: Scope,
    req: NewWithdrawal,
    origin: &Origin,
) -> Result<Withdrawal, ApiError> {
    let fingerprint = req.fingerprint();
    // A replay is answered as the first request was. With an operator gate that is decided
    // here, before the operator is asked again; otherwise the batch that writes the request
    // finds it (one read for the batch instead of one per request).
    let gated = project.validation_url.is_some();
    if gated {
        if let Some(existing) = wdb::by_foreign_id(&state.db, &project.id, &req.foreign_id).await? {
            return replay(existing, &fingerprint);
        }
    }
    let basis = match Basis::price(state, project, scope, &req) {
        Ok(basis) => basis,
        Err(e) => {
            // Whatever the rates do now, a replay still gets its first answer.
            if let Some(existing) =
                wdb::by_foreign_id(&state.db, &project.id, &req.foreign_id).await?
            {
                return replay(existing, &fingerprint);
            }
            return Err(e);
        }
    };
    if project.validation_url.is_some() {
        let priced = &basis.priced;
        let price = &priced.price;
        let asked = WithdrawRequest::new(&GateInput {
            project,
            initiator,
            scope,
            request: &req,
            price,
            base: priced.base,
            base_value: priced.base_value,
            now_ms: state.now(),
        });
        if let Err(refusal) = gate::check(state, project, &asked).await {
            record_gate_refusal(state, project, initiator, origin, &asked, &refusal).await?;
            return Err(ApiError::DeniedByOperator(refusal));
        }
    }
    let request = intake::Request {
        project: project.clone(),
        initiator: initiator.clone(),
        scope,
        req,
        basis,
        origin: origin.clone(),
        fingerprint,
    };
    state.intake.submit(state, request).await
}

/// The audit record of a refused request: the only thing a refusal writes.
async fn record_gate_refusal(
    state: &AppState,
    project: &Project,
    initiator: &Actor,
    origin: &Origin,
    asked: &WithdrawRequest,
    refusal: &GateRefusal,
) -> Result<(), DbError> {
    let now = state.now();
    let mut tx = state.db.begin().await?;
    audit::append(
        &mut tx,
        &audit::Entry {
            project_id: &project.id,
            actor: initiator,
            action: "withdrawal.denied_by_operator",
            subject: format!("foreign_id:{}", asked.foreign_id),
            details: json!({
                "foreign_id": asked.foreign_id, "currency": asked.currency, "amount": asked.amount,
                "convert_to": asked.convert_to, "address": asked.address, "scope": asked.scope,
                "operator_code": refusal.code.code(), "meaning": refusal.code.meaning(),
                "description": refusal.description, "operator_answered": refusal.answered,
            }),
            origin,
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(())
}

fn replay(existing: Withdrawal, fingerprint: &str) -> Result<Withdrawal, ApiError> {
    if existing.fingerprint == fingerprint {
        Ok(existing)
    } else {
        Err(ApiError::refused(
            "duplication_request",
            format!(
                "A withdrawal with foreign_id {:?} already exists with different fields",
                existing.foreign_id
            ),
        ))
    }
}

/// The outbox rows a withdrawal entering its current status needs: its callback, and the
/// payout once it is approved.
fn effects<'a>(state: &AppState, w: &'a Withdrawal, now: i64) -> Vec<NewJob<'a>> {
    let mut out = Vec::new();
    if w.status.has_callback() {
        let job = CallbackJob::for_status(w, w.status);
        let give_up = i64::try_from(state.settings.callbacks.give_up_after_hours).unwrap_or(72);
        out.push(NewJob {
            kind: JobKind::Callback,
            project_id: &w.project_id,
            withdrawal_id: Some(w.id),
            dedupe_key: job.msg_id.clone(),
            payload: serde_json::to_string(&job).unwrap_or_default(),
            run_at: now,
            deadline: Some(now + give_up * HOUR_MS),
        });
    }
    if w.status == Status::Approved {
        out.push(NewJob {
            kind: JobKind::PayoutSubmit,
            project_id: &w.project_id,
            withdrawal_id: Some(w.id),
            dedupe_key: format!("payout_submit:{}", w.id),
            payload: "{}".into(),
            run_at: now,
            deadline: None,
        });
    }
    out
}

/// A requested change.
pub struct Change<'a> {
    pub event: Event,
    pub actor: &'a Actor,
    pub note: &'a str,
    /// The merchant-visible `error` text (seed formats: "Declined by user ID:N", "Expired").
    pub error: Option<&'a str>,
    pub txid: Option<&'a str>,
    /// When the payout rail should be asked about this payout next (with PayoutSubmitted).
    pub check_at: Option<i64>,
    pub origin: &'a Origin,
}

/// Who moved a withdrawal to where it is, for "already decided by X at T".
#[derive(Debug, Clone)]
pub struct Decided {
    pub status: Status,
    pub actor_kind: String,
    pub actor_id: String,
    pub at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("withdrawal is {}", .0.status.as_str())]
    NotAllowed(Decided),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<BalanceError> for ChangeError {
    fn from(e: BalanceError) -> Self {
        match e {
            BalanceError::Db(d) => ChangeError::Db(d),
            BalanceError::Insufficient => ChangeError::Db(DbError::Query(sqlx::Error::Protocol(
                "held funds smaller than the withdrawal".into(),
            ))),
        }
    }
}

/// Who decided `id`: the event that took it out of `pending` (the decision a late approver
/// lost to), else its latest event.
pub(crate) async fn decided(state: &AppState, id: i64) -> Result<ChangeError, DbError> {
    let w = wdb::by_id(&state.db, id)
        .await?
        .ok_or_else(|| crate::db::corrupt("withdrawals.id", id.to_string()))?;
    let mut events = wdb::events(&state.db, id).await?;
    let left_pending = events
        .iter()
        .position(|e| e.from_status.as_deref() == Some(Status::Pending.as_str()));
    let last = match left_pending {
        Some(i) => Some(events.swap_remove(i)),
        None => events.pop(),
    };
    Ok(ChangeError::NotAllowed(Decided {
        status: w.status,
        actor_kind: last
            .as_ref()
            .map(|e| e.actor_kind.clone())
            .unwrap_or_default(),
        actor_id: last
            .as_ref()
            .map(|e| e.actor_id.clone())
            .unwrap_or_default(),
        at: last.map_or(w.updated_at, |e| e.created_at),
    }))
}

/// Moves `w` (as last read) through `change.event`. Exactly one of several concurrent
/// changes wins; the others get `NotAllowed` naming the winner.
pub async fn change(
    state: &AppState,
    w: &Withdrawal,
    change: Change<'_>,
) -> Result<Withdrawal, ChangeError> {
    if transition(w.status, change.event).is_err() {
        return Err(decided(state, w.id).await?);
    }
    match change_many(state, &[(w, change)]).await?.pop().flatten() {
        Some(after) => Ok(after),
        None => Err(decided(state, w.id).await?),
    }
}

/// [`change`] for several withdrawals in one transaction: one statement per table for all of
/// them. Each answer is the withdrawal after its change, or `None` when it was no longer in
/// the status it was read in (or the event does not apply to that status): someone else
/// moved it first.
pub async fn change_many(
    state: &AppState,
    items: &[(&Withdrawal, Change<'_>)],
) -> Result<Vec<Option<Withdrawal>>, ChangeError> {
    let mut tx = state.db.begin().await?;
    // Lock order: balances (sorted), then the withdrawals (in the status update).
    let mut held: HeldBalances = BTreeMap::new();
    for (w, change) in items {
        if matches!(transition(w.status, change.event), Ok((_, f)) if f != FundsEffect::None) {
            let (currency, _) = w.held();
            held.insert((w.project_id.clone(), currency.to_string()), None);
        }
    }
    for ((project_id, currency), slot) in held.iter_mut() {
        *slot = balances::lock(&state.db, &mut tx, project_id, currency).await?;
    }
    let refs: Vec<(&Withdrawal, &Change)> = items.iter().map(|(w, c)| (*w, c)).collect();
    let afters = changes_in(state, &mut tx, &refs, Locking::Held(&mut held)).await?;
    committed(state, tx, afters).await
}

/// [`change_many`] for the worker's payouts: what the rail said about withdrawals it had
/// been handed (`approved`) or is paying out (`processing`), several in one transaction.
///
/// It takes its locks in another order than every other change: the withdrawals first, then
/// the balances, the limit usage and the audit chains. That keeps the rows every new
/// withdrawal of the project needs (the balance and the chain head) for the last round trips
/// of the transaction only, not while the withdrawals' statuses, timeline and jobs are
/// written. The order is safe because no one but the worker moves an `approved` or
/// `processing` withdrawal ([`transition`]: only the rail's events apply to them), so no
/// transaction that holds a balance ever waits for one of these rows; and the rows are locked
/// in id order, so two instances that pick up the same payouts (a lease ran out) queue rather
/// than deadlock.
pub async fn record_payouts(
    state: &AppState,
    items: &[(&Withdrawal, Change<'_>)],
) -> Result<Vec<Option<Withdrawal>>, ChangeError> {
    let mut tx = state.db.begin().await?;
    let refs: Vec<(&Withdrawal, &Change)> = items.iter().map(|(w, c)| (*w, c)).collect();
    let afters = changes_in(state, &mut tx, &refs, Locking::AfterStatuses).await?;
    committed(state, tx, afters).await
}

/// Commits the changes and counts the withdrawals moved; wakes the worker for their jobs.
async fn committed(
    state: &AppState,
    tx: Tx<'_>,
    afters: Vec<Option<Withdrawal>>,
) -> Result<Vec<Option<Withdrawal>>, ChangeError> {
    tx.commit().await.map_err(DbError::from)?;
    state.wake.notify_one();
    for after in afters.iter().flatten() {
        state.metrics.moved(after.status);
    }
    Ok(afters)
}

/// Locks the balance `event` will move funds on, if it moves any. Lock order everywhere:
/// balance, then withdrawal, then limit usage, then audit head (the worker's payouts take
/// their withdrawals first, which is safe for them alone: see [`record_payouts`]).
pub(crate) async fn lock_funds(
    state: &AppState,
    tx: &mut Tx<'_>,
    w: &Withdrawal,
    event: Event,
) -> Result<Option<balances::Balance>, DbError> {
    match transition(w.status, event) {
        Ok((_, FundsEffect::None)) | Err(_) => Ok(None),
        Ok(_) => {
            let (currency, _) = w.held();
            balances::lock(&state.db, tx, &w.project_id, currency).await
        }
    }
}

/// The change inside the caller's transaction (which holds `balance`, locked by
/// [`lock_funds`]). `None` when `w` is no longer in the status it was read in: someone else
/// moved it first, and the caller must roll back.
pub(crate) async fn change_in(
    state: &AppState,
    tx: &mut Tx<'_>,
    w: &Withdrawal,
    change: &Change<'_>,
    balance: Option<balances::Balance>,
) -> Result<Option<Withdrawal>, ChangeError> {
    let mut held = BTreeMap::new();
    if let Some(b) = balance {
        let (currency, _) = w.held();
        held.insert((w.project_id.clone(), currency.to_string()), Some(b));
    }
    Ok(
        changes_in(state, tx, &[(w, change)], Locking::Held(&mut held))
            .await?
            .pop()
            .flatten(),
    )
}

/// A release or debit of a withdrawal's held funds.
type Move = (LedgerKind, Decimal, i64);

/// Balances a transaction holds, by project and currency (`None`: there is no such row).
type HeldBalances = BTreeMap<(String, String), Option<balances::Balance>>;

/// When [`changes_in`] has the balances it moves funds on.
enum Locking<'h> {
    /// The caller locked them before anything else (and `held` is kept up to date).
    Held(&'h mut HeldBalances),
    /// Locked once the statuses, timeline events and jobs are written: the worker's payouts
    /// (see [`record_payouts`]).
    AfterStatuses,
}

/// The changes inside the caller's transaction. One statement per table for all of them:
/// the conditional status writes, each balance's ledger entries, the timeline events, the
/// outbox rows, the audit records. Each answer is `None` when that withdrawal was not moved.
async fn changes_in(
    state: &AppState,
    tx: &mut Tx<'_>,
    items: &[(&Withdrawal, &Change<'_>)],
    locking: Locking<'_>,
) -> Result<Vec<Option<Withdrawal>>, ChangeError> {
    let now = state.now();
    let mut writes = Vec::new();
    let mut planned = Vec::new();
    for (i, (w, change)) in items.iter().enumerate() {
        // One change per withdrawal: a second one for the same withdrawal (two jobs that
        // should not both exist) is not made, rather than moving its funds twice.
        if items[..i].iter().any(|(other, _)| other.id == w.id) {
            continue;
        }
        // (Only the worker's payouts lock their withdrawals first: see `record_payouts`.)
        let late = matches!(locking, Locking::AfterStatuses);
        if late && !matches!(w.status, Status::Approved | Status::Processing) {
            continue;
        }
        if let Ok((to, funds)) = transition(w.status, change.event) {
            writes.push(wdb::StatusWrite {
                id: w.id,
                from: w.status,
                to,
                error: change.error,
                txid: change.txid,
            });
            planned.push((i, to, funds));
        }
    }
    let moved = wdb::set_statuses(tx, &writes, now).await?;
    let planned: Vec<_> = planned
        .into_iter()
        .filter(|&(i, _, _)| moved.contains(&items[i].0.id))
        .collect();

    let mut answers: Vec<Option<Withdrawal>> = vec![None; items.len()];
    for &(i, to, _) in &planned {
        let (w, change) = items[i];
        let mut after = w.clone();
        after.status = to;
        after.updated_at = now;
        if let Some(e) = change.error {
            after.error = e.to_string();
        }
        if let Some(t) = change.txid {
            after.txid = Some(t.to_string());
        }
        answers[i] = Some(after);
    }
    let events: Vec<wdb::NewEvent> = planned
        .iter()
        .map(|&(i, to, _)| {
            let (w, change) = items[i];
            wdb::NewEvent {
                withdrawal_id: w.id,
                from: Some(w.status),
                to,
                actor_kind: change.actor.kind(),
                actor_id: change.actor.id(),
                note: change.note,
            }
        })
        .collect();
    // The rows to write go in `out`, sent as one statement at the end (the worker's payouts
    // send the events and jobs before they lock the balances, and the rest at the end).
    let mut out = Writes::new(crate::db::engine_of(tx));
    wdb::push_events(&mut out, &events, now);
    let mut outbox = Vec::new();
    for &(i, to, _) in &planned {
        let Some(after) = &answers[i] else { continue };
        outbox.extend(effects(state, after, now));
        if to == Status::Processing {
            outbox.push(NewJob {
                kind: JobKind::PayoutCheck,
                project_id: &after.project_id,
                withdrawal_id: Some(after.id),
                dedupe_key: format!("payout_check:{}", after.id),
                payload: "{}".into(),
                run_at: items[i].1.check_at.unwrap_or(now),
                deadline: None,
            });
        }
    }
    jobs::push_jobs(&mut out, &outbox, now);
    for &(i, _, _) in &planned {
        let (w, change) = items[i];
        if let (Status::Pending, Some(after)) = (w.status, &answers[i]) {
            alerts::on_decided(tx, state, after, change.actor, change.note, now).await?;
        }
    }
    // Funds: per balance, every release or debit.
    let mut moves: BTreeMap<(String, String), Vec<Move>> = BTreeMap::new();
    for &(i, _, funds) in &planned {
        let w = items[i].0;
        let kind = match funds {
            FundsEffect::None => continue,
            FundsEffect::Debit => LedgerKind::Debit,
            FundsEffect::Release => LedgerKind::Release,
        };
        let (currency, amount) = w.held();
        let key = (w.project_id.clone(), currency.to_string());
        moves.entry(key).or_default().push((kind, amount, w.id));
    }
    let mut locked = HeldBalances::new();
    let held = match locking {
        Locking::Held(held) => held,
        Locking::AfterStatuses => {
            // The statuses, events and jobs go now; the rest once the balances are locked.
            out.run(tx).await?;
            out = Writes::new(crate::db::engine_of(tx));
            for (project_id, currency) in moves.keys() {
                let b = balances::lock(&state.db, tx, project_id, currency).await?;
                locked.insert((project_id.clone(), currency.clone()), b);
            }
            &mut locked
        }
    };
    for (key, list) in moves {
        let Some(Some(balance)) = held.get(&key).copied() else {
            return Err(ChangeError::Db(crate::db::corrupt(
                "balances",
                format!("{}/{} missing for held withdrawal", key.0, key.1),
            )));
        };
        let after = balances::push_moves(&mut out, &key.0, &key.1, balance, &list, now)?;
        held.insert(key, Some(after));
    }
    // Usage given back, window by window in sorted order (the order intake locks them in).
    let mut released: Vec<&Withdrawal> = planned
        .iter()
        .filter(|&&(_, _, funds)| funds == FundsEffect::Release)
        .map(|&(i, _, _)| items[i].0)
        .collect();
    released.sort_by_key(|w| {
        (
            w.project_id.as_str(),
            w.scope,
            w.currency.as_str(),
            w.usage_hour.as_str(),
            w.usage_day.as_str(),
        )
    });
    for w in released {
        let minus = Usage {
            amount: -w.amount,
            base_amount: -w.base_value,
        };
        let buckets = [w.usage_hour.as_str(), w.usage_day.as_str()];
        limits::add_usage(tx, &w.project_id, w.scope, &w.currency, buckets, minus).await?;
    }

    let records: Vec<audit::Entry> = planned
        .iter()
        .map(|&(i, to, _)| {
            let (w, change) = items[i];
            audit::Entry {
                project_id: &w.project_id,
                actor: change.actor,
                action: "withdrawal.status_changed",
                subject: format!("withdrawal:{}", w.id),
                details: json!({
                    "from": w.status.as_str(), "to": to.as_str(), "note": change.note,
                    "error": change.error, "txid": change.txid,
                }),
                origin: change.origin,
            }
        })
        .collect();
    let mut projects: Vec<&str> = records.iter().map(|e| e.project_id).collect();
    projects.sort_unstable();
    projects.dedup();
    for project_id in projects {
        let mine: Vec<&audit::Entry> = records
            .iter()
            .filter(|e| e.project_id == project_id)
            .collect();
        let head = audit::reserve(tx, project_id, mine.len()).await?;
        audit::push_chain(&mut out, head, &mine, now);
    }
    out.run(tx).await?;
    Ok(answers)
}

/// The merchant's cancel: only while pending.
pub async fn cancel_by_merchant(
    state: &AppState,
    w: &Withdrawal,
    actor: &Actor,
    origin: &Origin,
) -> Result<Withdrawal, ChangeError> {
    change(
        state,
        w,
        Change {
            event: Event::Cancel,
            actor,
            note: "cancelled through the API",
            error: Some("Cancelled by merchant"),
            txid: None,
            check_at: None,
            origin,
        },
    )
    .await
}

/// Cancels every pending withdrawal past its expiry. Returns how many it cancelled. One that
/// cannot be expired (a database error on it) is logged and left for the next round; it does
/// not hold up the others, nor the round's other work.
pub async fn expire_due(state: &AppState) -> Result<usize, DbError> {
    let ids = wdb::expired_pending(&state.db, state.now(), 100).await?;
    let mut n = 0;
    for id in ids {
        let Some(w) = wdb::by_id(&state.db, id).await? else {
            continue;
        };
        match expire(state, &w).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(withdrawal = id, error = %e, "could not expire withdrawal"),
        }
    }
    Ok(n)
}

/// Cancels `w` with error "Expired" (it was left pending past its expiry). False when it was
/// no longer pending: someone decided it first.
pub async fn expire(state: &AppState, w: &Withdrawal) -> Result<bool, DbError> {
    let r = change(
        state,
        w,
        Change {
            event: Event::Expire,
            actor: &Actor::System,
            note: "left pending past its expiry",
            error: Some("Expired"),
            txid: None,
            check_at: None,
            origin: &Origin::default(),
        },
    )
    .await;
    match r {
        Ok(_) => Ok(true),
        Err(ChangeError::NotAllowed(_)) => Ok(false),
        Err(ChangeError::Db(e)) => Err(e),
    }
}
