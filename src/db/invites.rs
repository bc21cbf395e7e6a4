//! Invitations: a user row with status 'invited' plus a single-use token, stored only as its
//! SHA-256, that lets the invitee choose a password.

use super::{Db, DbError, Tx};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct Invite {
    pub token_hash: String,
    pub user_id: String,
    pub created_by: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub created_at: i64,
}

pub async fn insert(
    tx: &mut Tx<'_>,
    token_hash: &str,
    user_id: &str,
    created_by: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO invites (token_hash, user_id, created_by, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(created_by)
    .bind(expires_at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn by_token_hash(db: &Db, token_hash: &str) -> Result<Option<Invite>, DbError> {
    let row = sqlx::query(
        "SELECT token_hash, user_id, created_by, expires_at, used_at, created_at
         FROM invites WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db.reader())
    .await?;
    row.map(|r| {
        Ok(Invite {
            token_hash: r.try_get("token_hash")?,
            user_id: r.try_get("user_id")?,
            created_by: r.try_get("created_by")?,
            expires_at: r.try_get("expires_at")?,
            used_at: r.try_get("used_at")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .transpose()
}

/// Uses an invitation: one conditional write, so a token works once even when two requests
/// race, and never after it expired.
pub async fn consume(tx: &mut Tx<'_>, token_hash: &str, now: i64) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE invites SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(token_hash)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Ends a user's outstanding invitations (a new one replaces them, or the user was removed):
/// they expire now.
pub async fn expire_for_user(tx: &mut Tx<'_>, user_id: &str, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE invites SET expires_at = $1 WHERE user_id = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
