//! Users of a project: role, withdrawal rights, password, TOTP, lockout counters, sessions'
//! generation. Every change that must end a user's sessions bumps `session_generation`.

use super::{Db, DbError, Tx};
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub project_id: String,
    pub email: String,
    pub role: Role,
    /// As stored; owners always have the right, see [`User::has_withdrawal_rights`].
    pub withdrawal_rights: bool,
    pub status: String,
    pub password_hash: Option<String>,
    pub totp_secret_enc: Option<String>,
    pub totp_pending_enc: Option<String>,
    pub totp_last_step: i64,
    pub session_generation: i64,
    pub failed_passwords: i64,
    pub failed_totp: i64,
    pub failures_since: Option<i64>,
    pub locked_until: Option<i64>,
    pub email_alerts: bool,
    /// Email about the outcome of withdrawals this user initiated.
    pub outcome_alerts: bool,
    /// From when this person may approve or decline: set when they gained withdrawal rights
    /// while Withdrawal Confirmation was on (see `service::team`); `None` means no hold.
    pub approver_from: Option<i64>,
    pub created_at: i64,
}

impl User {
    pub fn is_owner(&self) -> bool {
        self.role == Role::Owner
    }

    /// Owners always have withdrawal rights.
    pub fn has_withdrawal_rights(&self) -> bool {
        self.is_owner() || self.withdrawal_rights
    }

    pub fn totp_enrolled(&self) -> bool {
        self.totp_secret_enc.is_some()
    }

    /// Rights are usable only with TOTP enrolled.
    pub fn can_use_withdrawal_rights(&self) -> bool {
        self.has_withdrawal_rights() && self.totp_enrolled() && self.status == "active"
    }

    /// Until when a new approver's hold lasts, if it still does at `now`.
    pub fn approval_held_until(&self, now: i64) -> Option<i64> {
        self.approver_from.filter(|t| *t > now)
    }

    /// Whether this person counts as an approver at `now`: usable rights and no hold.
    pub fn can_approve(&self, now: i64) -> bool {
        self.can_use_withdrawal_rights() && self.approval_held_until(now).is_none()
    }

    pub fn is_locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }
}

const COLUMNS: &str = "id, project_id, email, role, withdrawal_rights, status, password_hash, totp_secret_enc, totp_pending_enc, totp_last_step, session_generation, failed_passwords, failed_totp, failures_since, locked_until, email_alerts, outcome_alerts, approver_from, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<User, DbError> {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        email: r.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| super::corrupt("users.role", role))?,
        withdrawal_rights: r.try_get::<i64, _>("withdrawal_rights")? != 0,
        status: r.try_get("status")?,
        password_hash: r.try_get("password_hash")?,
        totp_secret_enc: r.try_get("totp_secret_enc")?,
        totp_pending_enc: r.try_get("totp_pending_enc")?,
        totp_last_step: r.try_get("totp_last_step")?,
        session_generation: r.try_get("session_generation")?,
        failed_passwords: r.try_get("failed_passwords")?,
        failed_totp: r.try_get("failed_totp")?,
        failures_since: r.try_get("failures_since")?,
        locked_until: r.try_get("locked_until")?,
        email_alerts: r.try_get::<i64, _>("email_alerts")? != 0,
        outcome_alerts: r.try_get::<i64, _>("outcome_alerts")? != 0,
        approver_from: r.try_get("approver_from")?,
        created_at: r.try_get("created_at")?,
    })
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub email: &'a str,
    pub role: Role,
    pub withdrawal_rights: bool,
    pub status: &'a str,
    pub password_hash: Option<&'a str>,
    pub totp_secret_enc: Option<&'a str>,
}

/// Inserts a user; an email already in use fails with a unique violation.
pub async fn insert(tx: &mut Tx<'_>, u: &NewUser<'_>, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO users (id, project_id, email, email_norm, role, withdrawal_rights, status, password_hash, totp_secret_enc, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(u.id)
    .bind(u.project_id)
    .bind(u.email.trim())
    .bind(normalize_email(u.email))
    .bind(u.role.as_str())
    .bind(i64::from(u.withdrawal_rights || u.role == Role::Owner))
    .bind(u.status)
    .bind(u.password_hash)
    .bind(u.totp_secret_enc)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn by_id(db: &Db, id: &str) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A user of `project_id` by id: the only lookup page handlers use, so that an id from
/// another project is simply not found.
pub async fn in_project(db: &Db, project_id: &str, id: &str) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND project_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(project_id)
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_email(db: &Db, email: &str) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email_norm = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(normalize_email(email))
        .fetch_optional(db.reader())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(db: &Db, project_id: &str) -> Result<Vec<User>, DbError> {
    list_with(db.reader(), project_id).await
}

/// [`list`] inside a write transaction: on PostgreSQL a transaction holding row locks must
/// not wait for a second pool connection.
pub async fn list_in(tx: &mut Tx<'_>, project_id: &str) -> Result<Vec<User>, DbError> {
    list_with(&mut **tx, project_id).await
}

async fn list_with<'c, E>(ex: E, project_id: &str) -> Result<Vec<User>, DbError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE project_id = $1 AND status <> 'removed' ORDER BY created_at, email_norm"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(project_id)
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The user's own alert choices: approval requests (`email_alerts`) and outcomes of the
/// withdrawals they initiated (`outcome_alerts`).
pub async fn set_alerts(
    tx: &mut Tx<'_>,
    user_id: &str,
    email_alerts: bool,
    outcome_alerts: bool,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET email_alerts = $1, outcome_alerts = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(i64::from(email_alerts))
    .bind(i64::from(outcome_alerts))
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Accepts a TOTP step only if it is later than the last accepted one and the account is not
/// locked, in one conditional write: two requests racing with the same code cannot both win.
pub async fn accept_totp_step(
    db: &Db,
    user_id: &str,
    step: i64,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE users SET totp_last_step = $1, failed_totp = 0
         WHERE id = $2 AND totp_last_step < $1 AND (locked_until IS NULL OR locked_until <= $3)",
    )
    .bind(step)
    .bind(user_id)
    .bind(now)
    .execute(db.writer())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Takes one of the `max` code tries a failure window allows, before the code is checked, in
/// one conditional write: of any number of requests racing with wrong codes, at most `max`
/// get their code checked before the account locks. The try's number in the window, or
/// `None` when the account is locked or has no tries left. A right code gives the tries back
/// ([`accept_totp_step`], [`clear_code_failures`]).
pub async fn take_code_try(
    db: &Db,
    user_id: &str,
    now: i64,
    window_ms: i64,
    max: i64,
) -> Result<Option<i64>, DbError> {
    // Every right-hand side reads the row as it was before this update.
    let row = sqlx::query(
        "UPDATE users SET
            failed_totp = CASE WHEN failures_since IS NULL OR $1 - failures_since > $2 THEN 1 ELSE failed_totp + 1 END,
            failed_passwords = CASE WHEN failures_since IS NULL OR $1 - failures_since > $2 THEN 0 ELSE failed_passwords END,
            failures_since = CASE WHEN failures_since IS NULL OR $1 - failures_since > $2 THEN $1 ELSE failures_since END
         WHERE id = $3 AND (locked_until IS NULL OR locked_until <= $1)
           AND (failures_since IS NULL OR $1 - failures_since > $2 OR failed_totp < $4)
         RETURNING failed_totp",
    )
    .bind(now)
    .bind(window_ms)
    .bind(user_id)
    .bind(max)
    .fetch_optional(db.writer())
    .await?;
    row.map(|r| r.try_get::<i64, _>("failed_totp"))
        .transpose()
        .map_err(DbError::from)
}

/// Locks the account until `now + lock_ms` (the last try of a window failed) and starts a
/// new window.
pub async fn lock(db: &Db, user_id: &str, now: i64, lock_ms: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET locked_until = $1, failed_totp = 0, failed_passwords = 0, failures_since = $2
         WHERE id = $3",
    )
    .bind(now + lock_ms)
    .bind(now)
    .bind(user_id)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Gives one code try back (the code was right but used before).
pub async fn give_back_code_try(db: &Db, user_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET failed_totp = failed_totp - 1 WHERE id = $1 AND failed_totp > 0")
        .bind(user_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Gives the code tries back (a recovery code was right).
pub async fn clear_code_failures(db: &Db, user_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET failed_totp = 0 WHERE id = $1")
        .bind(user_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Records a failed password, in one conditional write (so that failures racing each other,
/// or a code try, are all counted). Within the window, the `max`th failure locks the account
/// until `now + lock_ms`; returns true for that failure.
pub async fn record_password_failure(
    db: &Db,
    user_id: &str,
    now: i64,
    window_ms: i64,
    max: i64,
    lock_ms: i64,
) -> Result<bool, DbError> {
    // Every right-hand side reads the row as it was before this update (as in take_code_try).
    let row = sqlx::query(
        "UPDATE users SET
            failed_passwords = CASE WHEN failures_since IS NULL OR $1 - failures_since > $2 THEN 1 ELSE failed_passwords + 1 END,
            failed_totp = CASE WHEN failures_since IS NULL OR $1 - failures_since > $2 THEN 0 ELSE failed_totp END,
            failures_since = CASE WHEN failures_since IS NULL OR $1 - failures_since > $2 THEN $1 ELSE failures_since END
         WHERE id = $3
         RETURNING failed_passwords",
    )
    .bind(now)
    .bind(window_ms)
    .bind(user_id)
    .fetch_optional(db.writer())
    .await?;
    let Some(row) = row else { return Ok(false) };
    if row.try_get::<i64, _>("failed_passwords")? != max {
        return Ok(false);
    }
    lock(db, user_id, now, lock_ms).await?;
    Ok(true)
}

pub async fn clear_password_failures(db: &Db, user_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET failed_passwords = 0 WHERE id = $1")
        .bind(user_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

pub async fn set_password(
    tx: &mut Tx<'_>,
    user_id: &str,
    hash: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET password_hash = $1, session_generation = session_generation + 1, updated_at = $2 WHERE id = $3",
    )
    .bind(hash)
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Activates an invited user with their password (the invite flow).
pub async fn activate(
    tx: &mut Tx<'_>,
    user_id: &str,
    hash: &str,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE users SET password_hash = $1, status = 'active', updated_at = $2 WHERE id = $3 AND status = 'invited'",
    )
    .bind(hash)
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_pending_totp(db: &Db, user_id: &str, enc: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET totp_pending_enc = $1 WHERE id = $2")
        .bind(enc)
        .bind(user_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Confirms enrollment: the pending secret becomes the secret and the confirming code's step
/// is burnt, in one conditional write.
pub async fn confirm_totp(
    tx: &mut Tx<'_>,
    user_id: &str,
    pending_enc: &str,
    step: i64,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE users SET totp_secret_enc = totp_pending_enc, totp_pending_enc = NULL, totp_last_step = $1, updated_at = $2
         WHERE id = $3 AND totp_pending_enc = $4 AND totp_last_step < $1",
    )
    .bind(step)
    .bind(now)
    .bind(user_id)
    .bind(pending_enc)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Resets 2FA: the user must enroll again at next sign-in; all sessions end.
pub async fn reset_totp(tx: &mut Tx<'_>, user_id: &str, now: i64) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE users SET totp_secret_enc = NULL, totp_pending_enc = NULL, session_generation = session_generation + 1, updated_at = $1
         WHERE id = $2",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Changes role and rights; ends the user's sessions.
pub async fn set_role_and_rights(
    tx: &mut Tx<'_>,
    user_id: &str,
    role: Role,
    rights: bool,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET role = $1, withdrawal_rights = $2, session_generation = session_generation + 1, updated_at = $3 WHERE id = $4",
    )
    .bind(role.as_str())
    .bind(i64::from(rights || role == Role::Owner))
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets (or clears) when `user_id` may first approve: see [`User::approver_from`].
pub async fn set_approver_from(
    tx: &mut Tx<'_>,
    user_id: &str,
    from: Option<i64>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET approver_from = $1 WHERE id = $2")
        .bind(from)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes a user: they can no longer sign in; their email is freed for reuse.
pub async fn remove(tx: &mut Tx<'_>, user_id: &str, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE users SET status = 'removed', email_norm = email_norm || '#removed-' || $1, session_generation = session_generation + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn replace_recovery_codes(
    tx: &mut Tx<'_>,
    user_id: &str,
    hashes: &[String],
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    for h in hashes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(h)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Uses a recovery code once: one conditional write.
pub async fn use_recovery_code(
    db: &Db,
    user_id: &str,
    code_hash: &str,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(code_hash)
    .execute(db.writer())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Owners and users with withdrawal rights of a project who can approve at `now` (TOTP
/// enrolled, no new approver's hold).
pub async fn count_approvers(db: &Db, project_id: &str, now: i64) -> Result<usize, DbError> {
    Ok(list(db, project_id)
        .await?
        .iter()
        .filter(|u| u.can_approve(now))
        .count())
}

/// Active owners: an invited owner who has not accepted yet cannot run the project.
pub async fn count_owners(db: &Db, project_id: &str) -> Result<usize, DbError> {
    Ok(list(db, project_id)
        .await?
        .iter()
        .filter(|u| u.is_owner() && u.status == "active")
        .count())
}

pub async fn any_user(db: &Db) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(db.reader())
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}
