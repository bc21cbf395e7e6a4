//! Withdrawal Confirmation requests (enable / disable) and their email links.

use super::{Db, DbError, Tx, corrupt};
use crate::domain::confirmation::RequestKind;
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct Request {
    pub id: i64,
    pub project_id: String,
    pub kind: RequestKind,
    pub requested_by: String,
    pub approver_id: Option<String>,
    pub status: String,
    pub expires_at: i64,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, project_id, kind, requested_by, approver_id, status, expires_at, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Request, DbError> {
    let kind: String = r.try_get("kind")?;
    Ok(Request {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        kind: RequestKind::parse(&kind)
            .ok_or_else(|| corrupt("confirmation_requests.kind", kind))?,
        requested_by: r.try_get("requested_by")?,
        approver_id: r.try_get("approver_id")?,
        status: r.try_get("status")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

/// The project's open request, if any (an expired one still counts until it is closed).
pub async fn open(db: &Db, project_id: &str) -> Result<Option<Request>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM confirmation_requests WHERE project_id = $1 AND status = 'open'"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Request>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM confirmation_requests WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Reads a request and keeps it locked until commit: confirmations, cancels and expiry of
/// one request queue here, so the last confirmation always sees the others.
pub async fn lock(db: &Db, tx: &mut Tx<'_>, id: i64) -> Result<Option<Request>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM confirmation_requests WHERE id = $1{}",
        db.for_update()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Opens a request; fails with a unique violation when one is already open.
pub async fn insert(
    tx: &mut Tx<'_>,
    project_id: &str,
    kind: RequestKind,
    requested_by: &str,
    approver_id: Option<&str>,
    expires_at: i64,
    now: i64,
) -> Result<i64, DbError> {
    let row = sqlx::query(
        "INSERT INTO confirmation_requests (project_id, kind, requested_by, approver_id, status, expires_at, created_at)
         VALUES ($1, $2, $3, $4, 'open', $5, $6) RETURNING id",
    )
    .bind(project_id)
    .bind(kind.as_str())
    .bind(requested_by)
    .bind(approver_id)
    .bind(expires_at)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("id")?)
}

/// Closes an open request as `status`: one conditional write, so of a confirmation, a
/// cancel and an expiry racing, one wins.
pub async fn close(
    tx: &mut Tx<'_>,
    id: i64,
    status: &str,
    by: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE confirmation_requests SET status = $1, closed_at = $2, closed_by = $3
         WHERE id = $4 AND status = 'open'",
    )
    .bind(status)
    .bind(now)
    .bind(by)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Open requests past their expiry, oldest first.
pub async fn expired(db: &Db, now: i64, limit: i64) -> Result<Vec<Request>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM confirmation_requests WHERE status = 'open' AND expires_at <= $1 ORDER BY id LIMIT $2"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(limit)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(from_row)
        .collect()
}

#[derive(Debug, Clone)]
pub struct Link {
    pub request_id: i64,
    pub role: String,
    pub email: String,
    pub user_id: Option<String>,
    pub confirmed_at: Option<i64>,
}

pub async fn insert_link(
    tx: &mut Tx<'_>,
    token_hash: &str,
    request_id: i64,
    role: &str,
    email: &str,
    user_id: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO confirmation_links (token_hash, request_id, role, email, user_id) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(request_id)
    .bind(role)
    .bind(email)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn link_from_row(r: &sqlx::any::AnyRow) -> Result<Link, DbError> {
    Ok(Link {
        request_id: r.try_get("request_id")?,
        role: r.try_get("role")?,
        email: r.try_get("email")?,
        user_id: r.try_get("user_id")?,
        confirmed_at: r.try_get("confirmed_at")?,
    })
}

pub async fn link(db: &Db, token_hash: &str) -> Result<Option<Link>, DbError> {
    let row = sqlx::query(
        "SELECT request_id, role, email, user_id, confirmed_at FROM confirmation_links WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db.reader())
    .await?;
    row.as_ref().map(link_from_row).transpose()
}

/// A request's links, in the order they were made.
pub async fn links(db: &Db, request_id: i64) -> Result<Vec<Link>, DbError> {
    sqlx::query(
        "SELECT request_id, role, email, user_id, confirmed_at FROM confirmation_links WHERE request_id = $1 ORDER BY role DESC",
    )
    .bind(request_id)
    .fetch_all(db.reader())
    .await?
    .iter()
    .map(link_from_row)
    .collect()
}

/// Marks a link confirmed (once), and returns how many of its request's links are still
/// unconfirmed afterwards; `None` if this link was already used.
pub async fn confirm_link(
    tx: &mut Tx<'_>,
    token_hash: &str,
    now: i64,
) -> Result<Option<i64>, DbError> {
    let r = sqlx::query(
        "UPDATE confirmation_links SET confirmed_at = $1 WHERE token_hash = $2 AND confirmed_at IS NULL",
    )
    .bind(now)
    .bind(token_hash)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM confirmation_links
         WHERE request_id = (SELECT request_id FROM confirmation_links WHERE token_hash = $1)
           AND confirmed_at IS NULL",
    )
    .bind(token_hash)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(row.try_get("n")?))
}

/// Sets the project's flag (inside the transaction that completes a request).
pub async fn set_flag(tx: &mut Tx<'_>, project_id: &str, on: bool) -> Result<(), DbError> {
    sqlx::query("UPDATE projects SET withdrawal_confirmation = $1 WHERE id = $2")
        .bind(i64::from(on))
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
