//! Reading the audit log back: filtered, newest first, keyset-paginated by sequence number.

use super::{Db, DbError};
use sqlx::Row;

/// What to show. Every field narrows the result; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor_kind: Option<String>,
    pub actor_id: Option<String>,
    /// Actions starting with this text (`user.` finds every user action).
    pub action_prefix: Option<String>,
    /// Epoch ms, inclusive.
    pub from: Option<i64>,
    /// Epoch ms, exclusive.
    pub until: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub seq: i64,
    pub created_at: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub hash: String,
}

/// `LIKE` pattern matching text that starts with `prefix` literally.
fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Up to `limit` records of the project matching `f`, with `seq < before` when given, newest
/// first. The next page starts before the last record's `seq`.
pub async fn page(
    db: &Db,
    project_id: &str,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Record>, DbError> {
    // Only placeholders are appended to the SQL; every value is bound.
    let mut sql = String::from(
        "SELECT seq, created_at, actor_kind, actor_id, action, subject, details, ip, user_agent, hash
         FROM audit_log WHERE project_id = $1",
    );
    let mut n = 1;
    let mut next = |clause: &str| {
        n += 1;
        clause.replace('?', &format!("${n}"))
    };
    let mut texts: Vec<String> = Vec::new();
    let mut numbers: Vec<i64> = Vec::new();
    // Text binds first, then numbers, in the order their placeholders were numbered.
    if let Some(k) = &f.actor_kind {
        sql.push_str(&next(" AND actor_kind = ?"));
        texts.push(k.clone());
    }
    if let Some(i) = &f.actor_id {
        sql.push_str(&next(" AND actor_id = ?"));
        texts.push(i.clone());
    }
    if let Some(a) = f.action_prefix.as_deref().filter(|a| !a.is_empty()) {
        sql.push_str(&next(" AND action LIKE ? ESCAPE '\\'"));
        texts.push(like_prefix(a));
    }
    if let Some(t) = f.from {
        sql.push_str(&next(" AND created_at >= ?"));
        numbers.push(t);
    }
    if let Some(t) = f.until {
        sql.push_str(&next(" AND created_at < ?"));
        numbers.push(t);
    }
    if let Some(b) = before {
        sql.push_str(&next(" AND seq < ?"));
        numbers.push(b);
    }
    sql.push_str(&next(" ORDER BY seq DESC LIMIT ?"));
    numbers.push(limit);
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(project_id);
    for t in texts {
        q = q.bind(t);
    }
    for v in numbers {
        q = q.bind(v);
    }
    let rows = q.fetch_all(db.reader()).await?;
    rows.iter()
        .map(|r| {
            Ok(Record {
                seq: r.try_get("seq")?,
                created_at: r.try_get("created_at")?,
                actor_kind: r.try_get("actor_kind")?,
                actor_id: r.try_get("actor_id")?,
                action: r.try_get("action")?,
                subject: r.try_get("subject")?,
                details: r.try_get("details")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
                hash: r.try_get("hash")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("user."), "user.%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
