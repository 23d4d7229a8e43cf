//! SQLite's side of the shared table descriptions: how each value is
//! stored (SQLite has no UUID, timestamp or JSON types), rows bound as
//! multi-row `VALUES` or one statement per row, SELECT lists, and its rows
//! read through [`ReadRow`].
//!
//! UUIDs are stored as lowercase hyphenated text, timestamps as RFC 3339
//! UTC text with six fractional digits (fixed width, so text order is time
//! order), JSON and lists of strings as JSON text.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::query_builder::QueryBuilder;
use sqlx::sqlite::{SqliteArgumentValue, SqliteConnection, SqliteRow, SqliteTypeInfo};
use sqlx::{Encode, Row as _, Sqlite, Type};
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::sql::columns::{Cell, Decode, Insert, Read, ReadRow, Shape};
use crate::store::sql::errors::{Dialect, classify};

/// Rows per multi-row insert: far below SQLite's limit of 32766 bound
/// parameters for the widest row (15 columns).
const INSERT_CHUNK: usize = 500;

pub(super) fn err(e: sqlx::Error) -> StoreError {
    classify(Dialect::Sqlite, e)
}

/// A timestamp as stored: RFC 3339, UTC, microseconds, fixed width.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(super) fn parse_ts(column: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc()))
        .map_err(|_| StoreError::Rejected(format!("bad timestamp {s:?} in column {column}")))
}

/// A cell binds as the value SQLite stores: text for UUIDs, timestamps,
/// JSON and lists, borrowed text for strings, numbers as they are.
impl<'a> Encode<'a, Sqlite> for Cell<'a> {
    fn encode_by_ref(
        &self,
        args: &mut Vec<SqliteArgumentValue<'a>>,
    ) -> Result<IsNull, BoxDynError> {
        fn put<'a, T: Encode<'a, Sqlite>>(
            v: T,
            args: &mut Vec<SqliteArgumentValue<'a>>,
        ) -> Result<IsNull, BoxDynError> {
            v.encode(args)
        }
        match *self {
            Cell::Uuid(v) => put(v.map(|u| u.to_string()), args),
            Cell::Text(v) => put(v, args),
            Cell::Int4(v) => put(v, args),
            Cell::Int8(v) => put(v, args),
            Cell::Float8(v) => put(v, args),
            Cell::Bool(v) => put(v, args),
            Cell::Timestamp(v) => put(v.map(ts), args),
            Cell::Json(v) => put(v.map(Value::to_string), args),
            Cell::TextList(v) => put(Value::from(v.to_vec()).to_string(), args),
        }
    }
}

/// Parameters are not type-checked by SQLite; the column's affinity
/// applies on insert.
impl Type<Sqlite> for Cell<'_> {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }
}

/// `INSERT INTO t (…) VALUES` (or `SELECT * FROM (VALUES`, closed by the
/// tail, to check the parent), and the tail with the conflict clause.
fn insert_sql<const N: usize, R: Insert<N>>() -> (String, String) {
    let names: Vec<&str> = R::COLUMNS.iter().map(|c| c.name).collect();
    let head = format!("INSERT INTO {} ({}) ", R::TABLE, names.join(", "));
    let conflict = R::ON_CONFLICT.sql(&R::COLUMNS);
    match R::ONLY_WITH_PARENT {
        None => (head, format!(" {conflict}")),
        // The columns of `VALUES` are named column1, column2, …
        Some(p) => (
            format!("{head}SELECT * FROM ("),
            format!(
                ") AS v WHERE EXISTS (SELECT 1 FROM {} p WHERE p.{} = v.column{}) {conflict}",
                p.table,
                p.key,
                p.column + 1
            ),
        ),
    }
}

/// Inserts the rows with multi-row statements of up to [`INSERT_CHUNK`]
/// rows; returns how many were written.
pub(super) async fn insert<const N: usize, R: Insert<N>>(
    conn: &mut SqliteConnection,
    rows: &[&R],
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let (head, tail) = insert_sql::<N, R>();
    let mut written = 0;
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(&head);
        qb.push_values(chunk, |mut b, row| {
            for cell in row.cells() {
                b.push_bind(cell);
            }
        });
        qb.push(&tail);
        // Full chunks share one cached statement; the last, odd-sized one
        // is prepared once and not cached.
        written += qb
            .build()
            .persistent(chunk.len() == INSERT_CHUNK)
            .execute(&mut *conn)
            .await
            .map_err(err)?
            .rows_affected();
    }
    Ok(written)
}

/// Runs `sql` once per row, its `?1`, `?2`, … bound to the row's cells in
/// the shape's column order. SQLite runs in-process, so a prepared
/// statement per row costs no round trip.
pub(super) async fn execute_each<const N: usize, R: Shape<N>>(
    conn: &mut SqliteConnection,
    sql: &str,
    rows: &[R],
) -> Result<(), StoreError> {
    for row in rows {
        let mut q = sqlx::query(sql);
        for cell in row.cells() {
            q = q.bind(cell);
        }
        q.execute(&mut *conn).await.map_err(err)?;
    }
    Ok(())
}

/// `SELECT … FROM …` for a record.
pub(super) fn select<D: Decode>() -> String {
    let mut list = Vec::new();
    for (alias, columns) in D::SELECT {
        for c in columns.iter().filter(|c| c.read != Read::Never) {
            list.push(if alias.is_empty() {
                c.name.to_owned()
            } else {
                format!("{alias}.{}", c.name)
            });
        }
    }
    format!("SELECT {} FROM {}", list.join(", "), D::FROM)
}

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(column).map_err(err)
}

fn get_text_as<T>(
    row: &SqliteRow,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    match get::<Option<&str>>(row, column)? {
        None => Ok(None),
        Some(s) => parse(s)
            .map(Some)
            .ok_or_else(|| StoreError::Rejected(format!("bad {what} {s:?} in column {column}"))),
    }
}

impl ReadRow for SqliteRow {
    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        get_text_as(self, column, |s| Uuid::parse_str(s).ok(), "UUID")
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        get(self, column)
    }
    fn opt_i32(&self, column: &str) -> Result<Option<i32>, StoreError> {
        get(self, column)
    }
    fn opt_i64(&self, column: &str) -> Result<Option<i64>, StoreError> {
        get(self, column)
    }
    fn opt_f64(&self, column: &str) -> Result<Option<f64>, StoreError> {
        get(self, column)
    }
    fn opt_bool(&self, column: &str) -> Result<Option<bool>, StoreError> {
        get(self, column)
    }
    fn opt_ts(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        get::<Option<&str>>(self, column)?
            .map(|s| parse_ts(column, s))
            .transpose()
    }
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StoreError> {
        get::<Option<&str>>(self, column)?
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|_| StoreError::Rejected(format!("bad JSON in column {column}")))
            })
            .transpose()
    }
    fn opt_text_list(&self, column: &str) -> Result<Option<Vec<String>>, StoreError> {
        get::<Option<&str>>(self, column)?
            .map(|s| {
                serde_json::from_str(s).map_err(|_| {
                    StoreError::Rejected(format!("{column} is not a JSON list of strings"))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text() {
        let a = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        let b = DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap();
        let c = DateTime::from_timestamp_micros(1_700_000_001_000_000).unwrap();
        assert!(ts(a) < ts(b) && ts(b) < ts(c));
        assert_eq!(parse_ts("t", &ts(b)).unwrap(), b);
    }

    #[test]
    fn statements_render_from_the_table_descriptions() {
        use crate::store::{QuestionResponseRow, SessionRecord};
        let (head, tail) = insert_sql::<9, QuestionResponseRow>();
        assert!(head.ends_with("created_at) SELECT * FROM ("));
        assert_eq!(
            tail,
            ") AS v WHERE EXISTS (SELECT 1 FROM conversations p WHERE p.id = v.column2) \
             ON CONFLICT DO NOTHING"
        );
        let sessions = select::<SessionRecord>();
        assert!(sessions.contains(", st.conversation_context FROM sessions s LEFT JOIN"));
        assert!(!sessions.contains("system_metrics"));
    }
}
