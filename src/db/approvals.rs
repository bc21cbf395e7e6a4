//! Votes on pending withdrawals, approval tiers, email-link tokens and admin-API claims.
//! The schema refuses a second vote by one user, a vote by the initiator and a vote from
//! another project (migration 0005); the code checks first so that people get a clear answer.

use super::{Arg, Db, DbError, Tx, corrupt};
use crate::domain::approval::Decision;
use crate::domain::money::db_decimal;
use crate::domain::policy::{Scope, Tier};
use sqlx::{Any, Executor, Row};
use std::collections::HashMap;

pub struct NewVote<'a> {
    pub withdrawal_id: i64,
    pub project_id: &'a str,
    pub initiator_id: &'a str,
    pub user_id: &'a str,
    pub decision: Decision,
    pub voter_is_owner: bool,
    pub channel: &'a str,
    pub note: &'a str,
}

pub async fn insert_vote(tx: &mut Tx<'_>, v: &NewVote<'_>, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO withdrawal_votes (withdrawal_id, project_id, initiator_id, user_id, decision, voter_role, channel, note, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(v.withdrawal_id)
    .bind(v.project_id)
    .bind(v.initiator_id)
    .bind(v.user_id)
    .bind(v.decision.as_str())
    .bind(if v.voter_is_owner { "owner" } else { "member" })
    .bind(v.channel)
    .bind(v.note)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub user_id: String,
    pub decision: Decision,
    pub by_owner: bool,
    pub channel: String,
    pub note: String,
    pub created_at: i64,
}

/// A withdrawal's votes, oldest first; inside a transaction or from the pool.
pub async fn votes<'c, E>(ex: E, withdrawal_id: i64) -> Result<Vec<Vote>, DbError>
where
    E: Executor<'c, Database = Any>,
{
    sqlx::query(
        "SELECT user_id, decision, voter_role, channel, note, created_at
         FROM withdrawal_votes WHERE withdrawal_id = $1 ORDER BY id",
    )
    .bind(withdrawal_id)
    .fetch_all(ex)
    .await?
    .iter()
    .map(vote_from_row)
    .collect()
}

fn vote_from_row(r: &sqlx::any::AnyRow) -> Result<Vote, DbError> {
    let d: String = r.try_get("decision")?;
    let role: String = r.try_get("voter_role")?;
    Ok(Vote {
        user_id: r.try_get("user_id")?,
        decision: Decision::parse(&d).ok_or_else(|| corrupt("withdrawal_votes.decision", d))?,
        by_owner: role == "owner",
        channel: r.try_get("channel")?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
    })
}

/// The votes on every pending withdrawal of a project, by withdrawal id (the queue page).
pub async fn votes_on_pending(
    db: &Db,
    project_id: &str,
) -> Result<HashMap<i64, Vec<Vote>>, DbError> {
    let rows = sqlx::query(
        "SELECT v.withdrawal_id, v.user_id, v.decision, v.voter_role, v.channel, v.note, v.created_at
         FROM withdrawal_votes v JOIN withdrawals w ON w.id = v.withdrawal_id
         WHERE w.project_id = $1 AND w.status = 'pending' ORDER BY v.id",
    )
    .bind(project_id)
    .fetch_all(db.reader())
    .await?;
    by_withdrawal(&rows)
}

/// The votes on each of `ids` (a page of withdrawals) in one query; an id without votes is
/// absent.
pub async fn votes_on(db: &Db, ids: &[i64]) -> Result<HashMap<i64, Vec<Vote>>, DbError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT withdrawal_id, user_id, decision, voter_role, channel, note, created_at
         FROM withdrawal_votes WHERE withdrawal_id IN {} ORDER BY id",
        super::values_list(1, ids.len(), 1)
    );
    let args = ids.iter().map(|&id| Arg::Int(id)).collect();
    let q = super::bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)), args);
    by_withdrawal(&q.fetch_all(db.reader()).await?)
}

/// Vote rows (with `withdrawal_id`) grouped by withdrawal, in the rows' order.
fn by_withdrawal(rows: &[sqlx::any::AnyRow]) -> Result<HashMap<i64, Vec<Vote>>, DbError> {
    let mut out: HashMap<i64, Vec<Vote>> = HashMap::new();
    for r in rows {
        let id: i64 = r.try_get("withdrawal_id")?;
        out.entry(id).or_default().push(vote_from_row(r)?);
    }
    Ok(out)
}

/// Who holds a withdrawal (admin API, PENDING -> PROCESSING) and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub user_id: String,
    pub until: i64,
}

/// The current claim on a withdrawal, if one holds at `now`.
pub async fn claim_of<'c, E>(ex: E, withdrawal_id: i64, now: i64) -> Result<Option<Claim>, DbError>
where
    E: Executor<'c, Database = Any>,
{
    let row = sqlx::query(
        "SELECT claimed_by, claimed_until FROM withdrawals
         WHERE id = $1 AND claimed_by IS NOT NULL AND claimed_until > $2",
    )
    .bind(withdrawal_id)
    .bind(now)
    .fetch_optional(ex)
    .await?;
    row.map(|r| {
        Ok(Claim {
            user_id: r.try_get("claimed_by")?,
            until: r.try_get("claimed_until")?,
        })
    })
    .transpose()
}

/// The claims holding at `now` on any of `ids` (a page of withdrawals), in one query.
pub async fn claims_on(db: &Db, ids: &[i64], now: i64) -> Result<HashMap<i64, Claim>, DbError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT id, claimed_by, claimed_until FROM withdrawals
         WHERE id IN {} AND claimed_by IS NOT NULL AND claimed_until > ${}",
        super::values_list(1, ids.len(), 1),
        ids.len() + 1
    );
    let mut args: Vec<Arg> = ids.iter().map(|&id| Arg::Int(id)).collect();
    args.push(Arg::Int(now));
    let q = super::bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)), args);
    let mut out = HashMap::new();
    for r in q.fetch_all(db.reader()).await? {
        let claim = Claim {
            user_id: r.try_get("claimed_by")?,
            until: r.try_get("claimed_until")?,
        };
        out.insert(r.try_get("id")?, claim);
    }
    Ok(out)
}

/// Claims a pending withdrawal for `user_id` until `until`: one conditional write, so of two
/// admins claiming at once exactly one holds it. The holder may renew its own claim.
pub async fn claim(
    tx: &mut Tx<'_>,
    withdrawal_id: i64,
    user_id: &str,
    until: i64,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE withdrawals SET claimed_by = $1, claimed_until = $2
         WHERE id = $3 AND status = 'pending'
           AND (claimed_by IS NULL OR claimed_until <= $4 OR claimed_by = $1)",
    )
    .bind(user_id)
    .bind(until)
    .bind(withdrawal_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The project's approval tiers, per scope.
pub async fn tiers(db: &Db, project_id: &str) -> Result<Vec<(Scope, Tier)>, DbError> {
    tiers_in(db.reader(), project_id).await
}

/// [`tiers`] through any executor (a transaction, the read pool).
pub async fn tiers_in<'c, E>(ex: E, project_id: &str) -> Result<Vec<(Scope, Tier)>, DbError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "SELECT scope, min_base_amount, approvers FROM approval_tiers WHERE project_id = $1",
    )
    .bind(project_id)
    .fetch_all(ex)
    .await?
    .iter()
    .map(tier_of)
    .collect()
}

/// A row of `approval_tiers` (columns `scope`, `min_base_amount`, `approvers`).
pub(crate) fn tier_of(r: &sqlx::any::AnyRow) -> Result<(Scope, Tier), DbError> {
    let scope: String = r.try_get("scope")?;
    let min: String = r.try_get("min_base_amount")?;
    let approvers: i64 = r.try_get("approvers")?;
    Ok((
        Scope::parse(&scope).ok_or_else(|| corrupt("approval_tiers.scope", scope))?,
        Tier {
            min_base_amount: db_decimal(&min)
                .map_err(|_| corrupt("approval_tiers.min_base_amount", min))?,
            approvers: u32::try_from(approvers)
                .map_err(|_| corrupt("approval_tiers.approvers", approvers.to_string()))?,
        },
    ))
}

/// Sets (or replaces) the tier at `min` for `scope`.
pub async fn put_tier(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    tier: Tier,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO approval_tiers (project_id, scope, min_base_amount, approvers, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (project_id, scope, min_base_amount)
         DO UPDATE SET approvers = excluded.approvers, updated_at = excluded.updated_at",
    )
    .bind(project_id)
    .bind(scope.as_str())
    .bind(tier.min_base_amount.normalize().to_string())
    .bind(i64::from(tier.approvers))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn delete_tier(
    tx: &mut Tx<'_>,
    project_id: &str,
    scope: Scope,
    min: &str,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "DELETE FROM approval_tiers WHERE project_id = $1 AND scope = $2 AND min_base_amount = $3",
    )
    .bind(project_id)
    .bind(scope.as_str())
    .bind(min)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An approval-email link.
#[derive(Debug, Clone)]
pub struct Link {
    pub withdrawal_id: i64,
    pub user_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert_link(
    db: &Db,
    token_hash: &str,
    withdrawal_id: i64,
    user_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO approval_links (token_hash, withdrawal_id, user_id, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(withdrawal_id)
    .bind(user_id)
    .bind(expires_at)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(())
}

pub async fn link(db: &Db, token_hash: &str) -> Result<Option<Link>, DbError> {
    let row = sqlx::query(
        "SELECT withdrawal_id, user_id, expires_at, used_at FROM approval_links WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| {
        Ok(Link {
            withdrawal_id: r.try_get("withdrawal_id")?,
            user_id: r.try_get("user_id")?,
            expires_at: r.try_get("expires_at")?,
            used_at: r.try_get("used_at")?,
        })
    })
    .transpose()
}

/// Uses a link: one conditional write, so it works once, and never after it expired.
pub async fn use_link(tx: &mut Tx<'_>, token_hash: &str, now: i64) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE approval_links SET used_at = $1
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(token_hash)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}
