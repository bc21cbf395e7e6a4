//! The queries only the admin API needs: its list of a project's withdrawals by panel status
//! (keyset pagination on the id, newest first), and giving a claim back.

use super::withdrawals::{COLUMNS, Withdrawal, from_row};
use super::{Arg, Db, DbError, Tx, bind_args};
use crate::domain::panel_status::{EXPIRED_ERROR, PanelStatus};

/// One page of the list and the cursor of the next (older) page, if there is one.
pub struct Page {
    pub rows: Vec<Withdrawal>,
    pub next: Option<i64>,
}

/// The condition for a panel status, from fixed fragments; values are bound.
fn condition(status: PanelStatus, now: i64, binds: &mut Vec<Arg>) -> String {
    let mut bind = |b: Arg| {
        binds.push(b);
        format!("${}", binds.len() + 1)
    };
    match status {
        PanelStatus::Pending => {
            let n = bind(Arg::Int(now));
            format!(
                "status = 'pending' AND (claimed_by IS NULL OR claimed_until IS NULL OR claimed_until <= {n})"
            )
        }
        PanelStatus::Processing => {
            let n = bind(Arg::Int(now));
            format!("status = 'pending' AND claimed_by IS NOT NULL AND claimed_until > {n}")
        }
        PanelStatus::Completed => "status IN ('approved', 'processing', 'confirmed')".into(),
        PanelStatus::Rejected => "status = 'declined'".into(),
        PanelStatus::Cancelled => {
            let e = bind(Arg::Text(EXPIRED_ERROR.to_string()));
            format!("status = 'cancelled' AND error <> {e}")
        }
        PanelStatus::Expired => {
            let e = bind(Arg::Text(EXPIRED_ERROR.to_string()));
            format!("status = 'cancelled' AND error = {e}")
        }
    }
}

/// Up to `limit` withdrawals of the project in `status` (any when None) with ids below
/// `before` (from the newest when None), newest first.
pub async fn list(
    db: &Db,
    project_id: &str,
    status: Option<PanelStatus>,
    before: Option<i64>,
    limit: i64,
    now: i64,
) -> Result<Page, DbError> {
    let limit = limit.max(1);
    // Binds after $1 (the project).
    let mut binds = Vec::new();
    let mut sql = format!("SELECT {COLUMNS} FROM withdrawals WHERE project_id = $1");
    if let Some(s) = status {
        let c = condition(s, now, &mut binds);
        sql.push_str(&format!(" AND {c}"));
    }
    if let Some(id) = before {
        binds.push(Arg::Int(id));
        sql.push_str(&format!(" AND id < ${}", binds.len() + 1));
    }
    binds.push(Arg::Int(limit + 1));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", binds.len() + 1));
    let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(project_id.to_string());
    let mut rows = bind_args(q, binds)
        .fetch_all(db.reader())
        .await?
        .iter()
        .map(from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if more {
        rows.last().map(|w| w.id)
    } else {
        None
    };
    Ok(Page { rows, next })
}

/// Gives back `user_id`'s unexpired claim on a pending withdrawal: one conditional write;
/// false when they hold none.
pub async fn release_claim(
    tx: &mut Tx<'_>,
    withdrawal_id: i64,
    user_id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE withdrawals SET claimed_by = NULL, claimed_until = NULL
         WHERE id = $1 AND status = 'pending' AND claimed_by = $2 AND claimed_until > $3",
    )
    .bind(withdrawal_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}
