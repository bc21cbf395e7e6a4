//! Reading withdrawals for the web app: the filtered list with keyset pagination on the id
//! (newest first), counts for the dashboard, and the one way a page loads a single
//! withdrawal. Every query here is scoped to one project: a withdrawal of another project
//! does not exist as far as these functions are concerned.
//!
//! The WHERE clause is assembled from fixed fragments with `$n` placeholders; every value a
//! user typed is bound, never written into the SQL text.

use super::withdrawals::{self as wdb, Withdrawal};
use super::{Arg, Db, DbError, bind_args, corrupt};
use crate::domain::money::db_decimal;
use crate::domain::withdrawal::Status;
use rust_decimal::Decimal;
use sqlx::Row;

/// Rows per page of the list.
pub const PAGE_SIZE: i64 = 50;

/// What the list is narrowed to. Empty fields do not narrow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Stored statuses to include (one merchant status can be several: `processing` is
    /// `approved` or `processing`); empty means every status.
    pub statuses: Vec<Status>,
    pub currency: Option<String>,
    /// Created at or after this instant (epoch ms).
    pub created_from: Option<i64>,
    /// Created strictly before this instant (epoch ms).
    pub created_before: Option<i64>,
    /// Exact match.
    pub foreign_id: Option<String>,
    /// Exact match.
    pub address: Option<String>,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The newest rows.
    Newest,
    /// Rows older than this id ("Older →").
    Before(i64),
    /// Rows newer than this id ("← Newer").
    After(i64),
}

/// One line of the list.
#[derive(Debug, Clone)]
pub struct ListRow {
    pub id: i64,
    pub foreign_id: String,
    pub currency: String,
    pub amount: Decimal,
    pub address: String,
    pub tag: Option<String>,
    pub end_user_reference: Option<String>,
    pub status: Status,
    pub error: String,
    pub created_at: i64,
    /// For a withdrawal with exchange: the balance it is paid from, and how much of it.
    pub source: Option<(String, Decimal)>,
}

/// A page of rows, newest first, and the cursors to its neighbours (None: no rows there).
#[derive(Debug, Clone)]
pub struct Page {
    pub rows: Vec<ListRow>,
    /// `Cursor::Before` this id shows the next older page.
    pub older: Option<i64>,
    /// `Cursor::After` this id shows the next newer page.
    pub newer: Option<i64>,
}

/// SQL text with its values, placeholders numbered as they are added.
struct Clause {
    sql: String,
    binds: Vec<Arg>,
}

impl Clause {
    /// Adds a value and returns its placeholder.
    fn bind(&mut self, b: Arg) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    /// `AND <fragment> $n`.
    fn and(&mut self, fragment: &str, b: Arg) {
        let p = self.bind(b);
        self.sql.push_str(&format!(" AND {fragment} {p}"));
    }
}

/// `project_id = $1 AND ...` for the filter. `created_at` is the column or, to keep an engine
/// off the date index, an expression of it (see [`Plan`]).
fn where_clause(project_id: &str, f: &ListFilter, created_at: &str) -> Clause {
    let mut c = Clause {
        sql: String::from("project_id = $1"),
        binds: vec![Arg::Text(project_id.to_string())],
    };
    if !f.statuses.is_empty() {
        let list: Vec<String> = f
            .statuses
            .iter()
            .map(|s| c.bind(Arg::Text(s.as_str().to_string())))
            .collect();
        c.sql
            .push_str(&format!(" AND status IN ({})", list.join(", ")));
    }
    if let Some(v) = &f.currency {
        c.and("currency =", Arg::Text(v.clone()));
    }
    if let Some(t) = f.created_from {
        c.and(&format!("{created_at} >="), Arg::Int(t));
    }
    if let Some(t) = f.created_before {
        c.and(&format!("{created_at} <"), Arg::Int(t));
    }
    if let Some(v) = &f.foreign_id {
        c.and("foreign_id =", Arg::Text(v.clone()));
    }
    if let Some(v) = &f.address {
        c.and("address =", Arg::Text(v.clone()));
    }
    c
}

const LIST_COLUMNS: &str = "id, foreign_id, currency, amount, address, tag, end_user_reference, status, error, created_at, source_currency, source_amount";

fn list_row(r: &sqlx::any::AnyRow) -> Result<ListRow, DbError> {
    let amount: String = r.try_get("amount")?;
    let status: String = r.try_get("status")?;
    Ok(ListRow {
        id: r.try_get("id")?,
        foreign_id: r.try_get("foreign_id")?,
        currency: r.try_get("currency")?,
        amount: db_decimal(&amount).map_err(|_| corrupt("withdrawals.amount", amount))?,
        address: r.try_get("address")?,
        tag: r.try_get("tag")?,
        end_user_reference: r.try_get("end_user_reference")?,
        status: Status::parse(&status).ok_or_else(|| corrupt("withdrawals.status", status))?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        source: match r.try_get::<Option<String>, _>("source_currency")? {
            Some(currency) => {
                let a: Option<String> = r.try_get("source_amount")?;
                let a = a.ok_or_else(|| corrupt("withdrawals.source_amount", "NULL"))?;
                let amount = db_decimal(&a).map_err(|_| corrupt("withdrawals.source_amount", a))?;
                Some((currency, amount))
            }
            None => None,
        },
    })
}

/// How a page is read.
///
/// Walking an id-ordered index from the cursor reads rows until the page is full: cheap when
/// matches lie near the start of the walk, which is the case for every filter that has an
/// index ending in `id` (status, currency, both, address). A date range does not: a busy day
/// long ago sits behind every newer row. Then it is cheaper to find the matches through the
/// date index and sort only them, which costs the number of matches, not the table size.
///
/// The engines' planners cannot be told this (SQLite has no statistics by default; neither
/// knows that ids grow with `created_at`), so the SQL says it: an expression such as `id + 0`
/// is not the column, and no index serves it. Walking ids writes the date terms that way;
/// sorting matches writes the id terms that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    WalkIds,
    SortMatches,
}

impl Plan {
    /// How the SQL names (id, created_at) for this plan.
    fn columns(self) -> (&'static str, &'static str) {
        match self {
            Plan::WalkIds => ("id", "created_at + 0"),
            Plan::SortMatches => ("id + 0", "created_at"),
        }
    }
}

/// The first budget, in index entries, for sizing a date range (see [`choose_plan`]).
const FIRST_BUDGET: i64 = 10_000;

/// Rows of the project created in `[from, before)`, counted up to `cap` (reads at most that
/// many entries of the date index).
async fn capped_count(
    db: &Db,
    project_id: &str,
    from: Option<i64>,
    before: Option<i64>,
    cap: i64,
) -> Result<i64, DbError> {
    let f = ListFilter {
        created_from: from,
        created_before: before,
        ..ListFilter::default()
    };
    let mut c = where_clause(project_id, &f, "created_at");
    let cap = c.bind(Arg::Int(cap));
    let text = format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM withdrawals WHERE {} LIMIT {cap}) AS capped",
        c.sql
    );
    let row = bind_args(sqlx::query(sqlx::AssertSqlSafe(text)), c.binds)
        .fetch_one(db.reader())
        .await?;
    Ok(row.try_get("n")?)
}

/// Sorting a date range's matches costs the rows in the range; walking ids costs the rows
/// newer than the range (ids grow with creation time) before the page fills. Both are
/// counted on the date index with a budget that grows fourfold until one comes in under it,
/// so sizing costs about as much as the cheaper plan itself.
async fn choose_plan(db: &Db, project_id: &str, f: &ListFilter) -> Result<Plan, DbError> {
    // `processing` is two stored states: no single index yields them in id order. Both are
    // transient (payouts in flight), so there are few to sort.
    if f.statuses.len() > 1 {
        return Ok(Plan::SortMatches);
    }
    let Some(end) = f.created_before else {
        // No date, or a range open towards now: its newest rows are the first of the walk.
        return Ok(Plan::WalkIds);
    };
    let mut budget = FIRST_BUDGET;
    for _ in 0..12 {
        if capped_count(db, project_id, f.created_from, f.created_before, budget).await? < budget {
            return Ok(Plan::SortMatches);
        }
        if capped_count(db, project_id, Some(end), None, budget).await? < budget {
            return Ok(Plan::WalkIds);
        }
        budget = budget.saturating_mul(4);
    }
    Ok(Plan::WalkIds)
}

/// Up to `limit + 1` matching rows on one side of the cursor (or from the newest), in walking
/// order: newest first when going older, oldest first when going newer.
async fn fetch(
    db: &Db,
    project_id: &str,
    f: &ListFilter,
    cursor: Cursor,
    limit: i64,
    plan: Plan,
) -> Result<Vec<ListRow>, DbError> {
    let (key, created_at) = plan.columns();
    let mut c = where_clause(project_id, f, created_at);
    let order = match cursor {
        Cursor::Newest => "DESC",
        Cursor::Before(id) => {
            c.and(&format!("{key} <"), Arg::Int(id));
            "DESC"
        }
        Cursor::After(id) => {
            c.and(&format!("{key} >"), Arg::Int(id));
            "ASC"
        }
    };
    let limit = c.bind(Arg::Int(limit + 1));
    let text = match plan {
        Plan::WalkIds => format!(
            "SELECT {LIST_COLUMNS} FROM withdrawals WHERE {} ORDER BY id {order} LIMIT {limit}",
            c.sql
        ),
        // The ids first: with only a date range they come from the date index alone (it
        // holds the id), then the page's rows by primary key.
        Plan::SortMatches => format!(
            "SELECT {LIST_COLUMNS} FROM withdrawals WHERE id IN (
                SELECT id FROM withdrawals WHERE {} ORDER BY {key} {order} LIMIT {limit})
             ORDER BY id {order}",
            c.sql
        ),
    };
    let rows = bind_args(sqlx::query(sqlx::AssertSqlSafe(text)), c.binds)
        .fetch_all(db.reader())
        .await?;
    rows.iter().map(list_row).collect()
}

/// Whether any matching row lies beyond `id` in that direction (`older`: smaller ids).
async fn any_beyond(
    db: &Db,
    project_id: &str,
    f: &ListFilter,
    id: i64,
    older: bool,
    plan: Plan,
) -> Result<bool, DbError> {
    let (key, created_at) = plan.columns();
    let mut c = where_clause(project_id, f, created_at);
    let cmp = if older { "<" } else { ">" };
    c.and(&format!("{key} {cmp}"), Arg::Int(id));
    // Searching a date range from the end where larger (or smaller) ids sit finds one at
    // once; from the other end it would read most of the range first.
    let dated = f.created_from.is_some() || f.created_before.is_some();
    let order = match (plan, dated, older) {
        (Plan::SortMatches, true, true) => " ORDER BY created_at ASC",
        (Plan::SortMatches, true, false) => " ORDER BY created_at DESC",
        _ => "",
    };
    let text = format!("SELECT id FROM withdrawals WHERE {}{order} LIMIT 1", c.sql);
    let row = bind_args(sqlx::query(sqlx::AssertSqlSafe(text)), c.binds)
        .fetch_optional(db.reader())
        .await?;
    Ok(row.is_some())
}

/// One page of the project's withdrawals matching `f`, newest first, `size` rows at most.
pub async fn list(
    db: &Db,
    project_id: &str,
    f: &ListFilter,
    cursor: Cursor,
    size: i64,
) -> Result<Page, DbError> {
    let size = size.max(1);
    let limit = usize::try_from(size).unwrap_or(usize::MAX);
    let plan = choose_plan(db, project_id, f).await?;
    let mut rows = fetch(db, project_id, f, cursor, size, plan).await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    if let Cursor::After(_) = cursor {
        rows.reverse();
    }
    let (first, last) = (rows.first().map(|r| r.id), rows.last().map(|r| r.id));
    let (older, newer) = match cursor {
        Cursor::Newest => (if more { last } else { None }, None),
        Cursor::Before(_) => {
            let newer = match first {
                Some(id) if any_beyond(db, project_id, f, id, false, plan).await? => Some(id),
                _ => None,
            };
            (if more { last } else { None }, newer)
        }
        Cursor::After(_) => {
            let older = match last {
                Some(id) if any_beyond(db, project_id, f, id, true, plan).await? => Some(id),
                _ => None,
            };
            (older, if more { first } else { None })
        }
    };
    Ok(Page { rows, older, newer })
}

/// How many of the project's withdrawals are in `status`.
pub async fn count_with_status(db: &Db, project_id: &str, status: Status) -> Result<i64, DbError> {
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM withdrawals WHERE project_id = $1 AND status = $2")
            .bind(project_id)
            .bind(status.as_str())
            .fetch_one(db.reader())
            .await?;
    Ok(row.try_get("n")?)
}

/// The withdrawal `id` if it belongs to `project_id`. This is the only way pages load one
/// withdrawal, so an id of another project is "not found" everywhere.
pub async fn get(db: &Db, project_id: &str, id: i64) -> Result<Option<Withdrawal>, DbError> {
    Ok(wdb::by_id(db, id)
        .await?
        .filter(|w| w.project_id == project_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_a_placeholder() {
        let f = ListFilter {
            statuses: vec![Status::Approved, Status::Processing],
            currency: Some("BTC'; DROP TABLE withdrawals; --".into()),
            created_from: Some(1),
            created_before: Some(2),
            foreign_id: Some("x".into()),
            address: Some("y".into()),
        };
        let Clause { sql, binds } = where_clause("p", &f, "created_at");
        assert_eq!(
            sql,
            "project_id = $1 AND status IN ($2, $3) AND currency = $4 AND created_at >= $5 \
             AND created_at < $6 AND foreign_id = $7 AND address = $8"
        );
        assert_eq!(binds.len(), 8);
        assert!(!sql.contains("DROP"));
    }

    #[test]
    fn no_filter_is_the_project_only() {
        let Clause { sql, binds } = where_clause("p", &ListFilter::default(), "created_at");
        assert_eq!(sql, "project_id = $1");
        assert_eq!(binds.len(), 1);
    }
}
