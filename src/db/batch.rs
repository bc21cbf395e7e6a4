//! Multi-row writes, and the rows they write, sent together.
//!
//! [`Rows`] carries a batch's rows to a statement as a table, in the form each engine reads
//! fastest. On PostgreSQL they travel as one JSON parameter read by `json_to_recordset`: the
//! statement's text is then the same for one row or sixty-four, so it is prepared and planned
//! once per connection (a text that changed with every batch was never found in the statement
//! cache, and each new text costs PostgreSQL one more round trip to prepare). On SQLite,
//! which prepares in-process, they are a `VALUES` list of bound parameters: reading each
//! column out of a JSON object with `->>` cost about as much again as the insert itself
//! (measured: 48 against 93 µs a row of `withdrawals`, SQLite 3.51).
//!
//! [`Writes`] gathers a transaction's writes and sends them together: on PostgreSQL as one
//! statement (each write a data-modifying CTE: all run, on one snapshot, and foreign keys are
//! checked at the end of the statement), on SQLite one after another in the order given
//! (parents first). Writes that must touch an exact number of rows say so, and a write that
//! does not makes [`Writes::run`] fail, so the caller's transaction rolls back.

pub use super::Arg;
use super::{DbError, Engine, Tx, bind_args};
use sqlx::Row;

/// A column's SQL type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Text,
    Int,
    /// Text that is itself serialized JSON (from `serde_json`), such as an audit record's
    /// details: stored as given, but sent to PostgreSQL as a JSON value inside the rows rather
    /// than as a JSON string, so that PostgreSQL need not unescape it (for the details of a
    /// batch's audit records that was a third of the batch's write). PostgreSQL keeps a `json`
    /// value's text exactly as it came, so what is stored is byte for byte what was given (and
    /// what the audit chain hashed).
    Json,
}

/// One value of a row.
#[derive(Clone, Copy, Debug)]
pub enum V<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

/// The columns of a row set, named and typed once.
pub type Cols = &'static [(&'static str, Ty)];

/// Rows for one statement (see the module's documentation).
pub struct Rows {
    cols: Cols,
    values: Vec<Arg>,
    len: usize,
}

impl Rows {
    pub fn new(cols: Cols) -> Rows {
        Rows {
            cols,
            values: Vec::new(),
            len: 0,
        }
    }

    /// Appends a row: one value per column, in the columns' order.
    pub fn push(&mut self, values: &[V<'_>]) {
        debug_assert_eq!(values.len(), self.cols.len(), "one value per column");
        self.values.extend(values.iter().map(|v| match *v {
            V::Text(s) | V::OptText(Some(s)) => Arg::Text(s.to_owned()),
            V::Int(n) | V::OptInt(Some(n)) => Arg::Int(n),
            V::OptText(None) => Arg::NullText,
            V::OptInt(None) => Arg::NullInt,
        }));
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `SELECT <columns> FROM` the rows, whose parameters are numbered from `$first`, and the
    /// values to bind there: the rows' parameters must come last in their statement.
    pub fn into_select(self, engine: Engine, first: usize) -> (String, Vec<Arg>) {
        match engine {
            Engine::Postgres => {
                let names: Vec<String> = (self.cols.iter())
                    .map(|(n, t)| match t {
                        Ty::Json => format!("x.{n}::text AS {n}"),
                        Ty::Text | Ty::Int => format!("x.{n}"),
                    })
                    .collect();
                let defs: Vec<String> = self
                    .cols
                    .iter()
                    .map(|(n, t)| format!("{n} {}", pg_type(*t)))
                    .collect();
                let sql = format!(
                    "SELECT {} FROM json_to_recordset(${first}::json) AS x({})",
                    names.join(", "),
                    defs.join(", ")
                );
                (sql, vec![Arg::Text(self.json())])
            }
            Engine::Sqlite => {
                let names: Vec<String> = self.cols.iter().map(|(n, _)| format!("x.{n}")).collect();
                let list = super::values_list(self.len, self.cols.len(), first);
                let cells: Vec<String> = (self.cols.iter().enumerate())
                    .map(|(i, (n, _))| format!("column{} AS {n}", i + 1))
                    .collect();
                let sql = format!(
                    "SELECT {} FROM (SELECT {} FROM (VALUES {list})) AS x",
                    names.join(", "),
                    cells.join(", ")
                );
                (sql, self.values)
            }
        }
    }

    /// The rows as a JSON array of objects keyed by column name.
    fn json(&self) -> String {
        let mut json = String::from("[");
        let width = self.cols.len().max(1);
        for (row, values) in self.values.chunks(width).enumerate() {
            json.push_str(if row == 0 { "{" } else { ",{" });
            for (i, ((name, ty), v)) in self.cols.iter().zip(values).enumerate() {
                if i > 0 {
                    json.push(',');
                }
                json.push('"');
                json.push_str(name);
                json.push_str("\":");
                match v {
                    Arg::Text(s) if *ty == Ty::Json => json.push_str(s),
                    Arg::Text(s) => json.push_str(&json_string(s)),
                    Arg::Int(n) => json.push_str(&n.to_string()),
                    Arg::NullText | Arg::NullInt => json.push_str("null"),
                }
            }
            json.push('}');
        }
        json.push(']');
        json
    }
}

fn pg_type(t: Ty) -> &'static str {
    match t {
        Ty::Text => "text",
        Ty::Int => "bigint",
        Ty::Json => "json",
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

struct Write {
    /// Numbers its own parameters `$1..$n`, `n` = `args.len()`.
    sql: String,
    args: Vec<Arg>,
    expect: Option<u64>,
}

/// A transaction's writes, sent together (see the module's documentation).
pub struct Writes {
    engine: Engine,
    writes: Vec<Write>,
}

impl Writes {
    pub fn new(engine: Engine) -> Writes {
        Writes {
            engine,
            writes: Vec::new(),
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Adds an `INSERT`, `UPDATE` or `DELETE` (without `RETURNING`) that numbers its own
    /// parameters from `$1`; `expect` is the number of rows it must touch, if known.
    pub fn push(&mut self, sql: String, args: Vec<Arg>, expect: Option<u64>) {
        self.writes.push(Write { sql, args, expect });
    }

    pub async fn run(self, tx: &mut Tx<'_>) -> Result<(), DbError> {
        if self.engine == Engine::Postgres && self.writes.len() > 1 {
            return run_as_one(self.writes, tx).await;
        }
        for w in self.writes {
            let q = bind_args(sqlx::query(sqlx::AssertSqlSafe(w.sql)), w.args);
            let done = q.execute(&mut **tx).await?;
            check(w.expect, done.rows_affected())?;
        }
        Ok(())
    }
}

fn check(expect: Option<u64>, touched: u64) -> Result<(), DbError> {
    match expect {
        Some(n) if n != touched => Err(DbError::Stale(format!(
            "a batched write touched {touched} rows, expected {n}"
        ))),
        _ => Ok(()),
    }
}

/// PostgreSQL: `WITH w0 AS (...), w1 AS (... RETURNING 1) SELECT (SELECT count(*) FROM w1)`.
async fn run_as_one(writes: Vec<Write>, tx: &mut Tx<'_>) -> Result<(), DbError> {
    let mut ctes = Vec::with_capacity(writes.len());
    let mut counts = Vec::new();
    let mut expects = Vec::new();
    let mut args = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        let sql = renumber(&w.sql, args.len());
        match w.expect {
            Some(n) => {
                ctes.push(format!("w{i} AS ({sql} RETURNING 1)"));
                counts.push(format!("(SELECT count(*) FROM w{i}) AS n{i}"));
                expects.push(n);
            }
            None => ctes.push(format!("w{i} AS ({sql})")),
        }
        args.extend(w.args);
    }
    let select = if counts.is_empty() {
        "SELECT 1".to_string()
    } else {
        format!("SELECT {}", counts.join(", "))
    };
    let sql = format!("WITH {} {select}", ctes.join(", "));
    let row = bind_args(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_one(&mut **tx)
        .await?;
    for (i, n) in expects.into_iter().enumerate() {
        let touched: i64 = row.try_get(i)?;
        check(Some(n), u64::try_from(touched).unwrap_or(0))?;
    }
    Ok(())
}

/// `sql` with each placeholder `$k` moved to `$(k + by)`. Our statements use `$` only for
/// placeholders (no dollar quoting, no `$` in literals).
fn renumber(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut n = String::new();
        while let Some(&(_, d)) = chars.peek() {
            if !d.is_ascii_digit() {
                break;
            }
            n.push(d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(k) => out.push_str(&format!("${}", k + by)),
            Err(_) => out.push('$'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_move_past_the_writes_before() {
        assert_eq!(
            renumber("INSERT INTO t VALUES ($1, $2, $10) -- $", 3),
            "INSERT INTO t VALUES ($4, $5, $13) -- $"
        );
        assert_eq!(renumber("a = $1", 0), "a = $1");
    }

    #[test]
    fn rows_go_to_postgresql_as_json_objects_with_escaped_text() {
        const COLS: Cols = &[("a", Ty::Text), ("b", Ty::Int), ("c", Ty::Text)];
        let mut rows = Rows::new(COLS);
        assert!(rows.is_empty());
        rows.push(&[V::Text("x\"y"), V::Int(-3), V::OptText(None)]);
        rows.push(&[V::Text("é"), V::OptInt(None), V::OptText(Some("z"))]);
        assert_eq!(rows.len(), 2);
        let (sql, args) = rows.into_select(Engine::Postgres, 3);
        assert_eq!(
            sql,
            "SELECT x.a, x.b, x.c FROM json_to_recordset($3::json) AS x(a text, b bigint, c text)"
        );
        let [Arg::Text(json)] = &args[..] else {
            panic!("one JSON parameter: {args:?}")
        };
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([{"a": "x\"y", "b": -3, "c": null}, {"a": "é", "b": null, "c": "z"}])
        );
    }

    #[test]
    fn json_text_goes_to_postgresql_as_a_json_value_and_comes_back_as_text() {
        const COLS: Cols = &[("a", Ty::Text), ("d", Ty::Json)];
        let details = serde_json::json!({"q": "say \"hi\"", "n": [1, null]}).to_string();
        let mut rows = Rows::new(COLS);
        rows.push(&[V::Text("x"), V::Text(&details)]);
        let (sql, args) = rows.into_select(Engine::Postgres, 1);
        assert_eq!(
            sql,
            "SELECT x.a, x.d::text AS d FROM json_to_recordset($1::json) AS x(a text, d json)"
        );
        let [Arg::Text(json)] = &args[..] else {
            panic!("one JSON parameter: {args:?}")
        };
        assert_eq!(json, &format!(r#"[{{"a":"x","d":{details}}}]"#));
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(parsed[0]["d"]["q"], "say \"hi\"");
        // SQLite binds the text as it is.
        let mut rows = Rows::new(COLS);
        rows.push(&[V::Text("x"), V::Text(&details)]);
        let (_, args) = rows.into_select(Engine::Sqlite, 1);
        assert_eq!(
            format!("{args:?}"),
            format!("[Text(\"x\"), Text({details:?})]")
        );
    }

    #[test]
    fn rows_go_to_sqlite_as_a_values_list_of_parameters() {
        const COLS: Cols = &[("a", Ty::Text), ("b", Ty::Int)];
        let mut rows = Rows::new(COLS);
        rows.push(&[V::Text("x"), V::Int(1)]);
        rows.push(&[V::OptText(None), V::OptInt(None)]);
        let (sql, args) = rows.into_select(Engine::Sqlite, 2);
        assert_eq!(
            sql,
            "SELECT x.a, x.b FROM (SELECT column1 AS a, column2 AS b FROM (VALUES ($2, $3), ($4, $5))) AS x"
        );
        assert_eq!(
            format!("{args:?}"),
            r#"[Text("x"), Int(1), NullText, NullInt]"#
        );
    }
}
