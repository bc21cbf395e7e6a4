//! Server-side sessions. The cookie carries a random id; the table stores its SHA-256.

use super::{Db, DbError};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No user yet; carries the sign-in form's CSRF token.
    Anon,
    /// Password accepted; the second factor is due.
    Password,
    /// Password accepted, TOTP not enrolled yet: enrollment is due.
    Enroll,
    /// Signed in.
    Full,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Anon => "anon",
            Stage::Password => "password",
            Stage::Enroll => "enroll",
            Stage::Full => "full",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        [Stage::Anon, Stage::Password, Stage::Enroll, Stage::Full]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: Option<String>,
    pub stage: Stage,
    pub generation: i64,
    pub csrf_token: String,
    pub return_to: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub absolute_expiry: i64,
    pub verified_at: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

const COLUMNS: &str = "id_hash, user_id, stage, generation, csrf_token, return_to, created_at, last_seen_at, absolute_expiry, verified_at, ip, user_agent";

fn from_row(r: &sqlx::any::AnyRow) -> Result<SessionRow, DbError> {
    let stage: String = r.try_get("stage")?;
    Ok(SessionRow {
        id_hash: r.try_get("id_hash")?,
        user_id: r.try_get("user_id")?,
        stage: Stage::parse(&stage).ok_or_else(|| super::corrupt("sessions.stage", stage))?,
        generation: r.try_get("generation")?,
        csrf_token: r.try_get("csrf_token")?,
        return_to: r.try_get("return_to")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        absolute_expiry: r.try_get("absolute_expiry")?,
        verified_at: r.try_get("verified_at")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
    })
}

pub async fn insert(db: &Db, s: &SessionRow) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, stage, generation, csrf_token, return_to, created_at, last_seen_at, absolute_expiry, verified_at, ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&s.id_hash)
    .bind(s.user_id.as_deref())
    .bind(s.stage.as_str())
    .bind(s.generation)
    .bind(&s.csrf_token)
    .bind(s.return_to.as_deref())
    .bind(s.created_at)
    .bind(s.last_seen_at)
    .bind(s.absolute_expiry)
    .bind(s.verified_at)
    .bind(s.ip.as_deref())
    .bind(s.user_agent.as_deref())
    .execute(db.writer())
    .await?;
    Ok(())
}

/// A live (not ended) session by the hash of its id.
pub async fn get(db: &Db, id_hash: &str) -> Result<Option<SessionRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id_hash = $1 AND ended_at IS NULL");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_hash)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn touch(db: &Db, id_hash: &str, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
        .bind(now)
        .bind(id_hash)
        .execute(db.writer())
        .await?;
    Ok(())
}

pub async fn end(db: &Db, id_hash: &str, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id_hash = $2 AND ended_at IS NULL")
        .bind(now)
        .bind(id_hash)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Ends one of a user's sessions (from the sessions page); false if it is not theirs.
pub async fn end_for_user(
    db: &Db,
    user_id: &str,
    id_hash: &str,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE sessions SET ended_at = $1 WHERE id_hash = $2 AND user_id = $3 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(id_hash)
    .bind(user_id)
    .execute(db.writer())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The user's live, signed-in sessions, newest first.
pub async fn active_for_user(
    db: &Db,
    user_id: &str,
    now: i64,
    idle_ms: i64,
) -> Result<Vec<SessionRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 AND ended_at IS NULL AND stage = 'full'
         AND absolute_expiry > $2 AND last_seen_at > $3 ORDER BY last_seen_at DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(now)
        .bind(now - idle_ms)
        .fetch_all(db.reader())
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn set_return_to(db: &Db, id_hash: &str, to: Option<&str>) -> Result<(), DbError> {
    sqlx::query("UPDATE sessions SET return_to = $1 WHERE id_hash = $2")
        .bind(to)
        .bind(id_hash)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Deletes up to `limit` sessions that were dead before `dead_before`: ended, past their
/// absolute expiry, or unused for longer than `idle_ms`. Returns how many. Nothing reads a
/// dead session (`auth::session::load` treats it as no session at all), so this only keeps
/// the table, with every sign-in page's anonymous session and every `return_to`, from
/// growing for ever.
pub async fn purge(db: &Db, dead_before: i64, idle_ms: i64, limit: i64) -> Result<u64, DbError> {
    let done = sqlx::query(
        "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions
           WHERE ended_at < $1 OR absolute_expiry < $1 OR last_seen_at < $2 LIMIT $3)",
    )
    .bind(dead_before)
    .bind(dead_before - idle_ms)
    .bind(limit)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected())
}
