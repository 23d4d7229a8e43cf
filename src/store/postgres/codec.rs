//! PostgreSQL's side of the shared table descriptions: rows bound as one
//! array per column for `UNNEST`, SELECT lists rendered in its dialect,
//! and its rows read through [`ReadRow`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row as _};
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::sql::columns::{Cell, Column, Decode, Insert, Read, ReadRow, Shape, SqlType};
use crate::store::sql::errors::{Dialect, classify};

pub(super) fn err(e: sqlx::Error) -> StoreError {
    classify(Dialect::Postgres, e)
}

/// One column of a set of rows, as the array bound to its `UNNEST`
/// parameter.
enum Array<'a> {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<&'a str>>),
    Int4(Vec<Option<i32>>),
    Int8(Vec<Option<i64>>),
    Float8(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
    Json(Vec<Option<&'a Value>>),
    /// Lists travel as JSON arrays, unnested back into `TEXT[]` by the
    /// statement: `UNNEST` would flatten a two-dimensional text array.
    TextList(Vec<Value>),
}

impl<'a> Array<'a> {
    fn new(ty: SqlType, n: usize) -> Array<'a> {
        match ty {
            SqlType::Uuid => Array::Uuid(Vec::with_capacity(n)),
            SqlType::Text => Array::Text(Vec::with_capacity(n)),
            SqlType::Int4 => Array::Int4(Vec::with_capacity(n)),
            SqlType::Int8 => Array::Int8(Vec::with_capacity(n)),
            SqlType::Decimal => Array::Float8(Vec::with_capacity(n)),
            SqlType::Bool => Array::Bool(Vec::with_capacity(n)),
            SqlType::Timestamp => Array::Timestamp(Vec::with_capacity(n)),
            SqlType::Json => Array::Json(Vec::with_capacity(n)),
            SqlType::TextList => Array::TextList(Vec::with_capacity(n)),
        }
    }

    /// The parameter's type in the statement.
    fn cast(ty: SqlType) -> &'static str {
        match ty {
            SqlType::Uuid => "uuid[]",
            SqlType::Text => "text[]",
            SqlType::Int4 => "int4[]",
            SqlType::Int8 => "int8[]",
            SqlType::Decimal => "float8[]",
            SqlType::Bool => "bool[]",
            SqlType::Timestamp => "timestamptz[]",
            SqlType::Json | SqlType::TextList => "jsonb[]",
        }
    }

    fn push(&mut self, cell: Cell<'a>, column: &Column) -> Result<(), StoreError> {
        match (self, cell) {
            (Array::Uuid(a), Cell::Uuid(v)) => a.push(v),
            (Array::Text(a), Cell::Text(v)) => a.push(v),
            (Array::Int4(a), Cell::Int4(v)) => a.push(v),
            (Array::Int8(a), Cell::Int8(v)) => a.push(v),
            (Array::Float8(a), Cell::Float8(v)) => a.push(v),
            (Array::Bool(a), Cell::Bool(v)) => a.push(v),
            (Array::Timestamp(a), Cell::Timestamp(v)) => a.push(v),
            (Array::Json(a), Cell::Json(v)) => a.push(v),
            (Array::TextList(a), Cell::TextList(v)) => a.push(Value::from(v.to_vec())),
            // The tables' tests rule this out; never write a wrong column.
            _ => {
                return Err(StoreError::Rejected(format!(
                    "column {}: value does not fit {:?}",
                    column.name, column.ty
                )));
            }
        }
        Ok(())
    }

    fn bind<'q>(self, q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>
    where
        'a: 'q,
    {
        match self {
            Array::Uuid(a) => q.bind(a),
            Array::Text(a) => q.bind(a),
            Array::Int4(a) => q.bind(a),
            Array::Int8(a) => q.bind(a),
            Array::Float8(a) => q.bind(a),
            Array::Bool(a) => q.bind(a),
            Array::Timestamp(a) => q.bind(a),
            Array::Json(a) => q.bind(a),
            Array::TextList(a) => q.bind(a),
        }
    }
}

/// `UNNEST($1::uuid[], …) AS u(id, …)`: the rows of a shape as a relation
/// `u` whose columns have the table's names.
pub(super) fn unnest(columns: &[Column]) -> String {
    let mut sql = String::from("UNNEST(");
    for (i, c) in columns.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(sql, "{sep}${}::{}", i + 1, Array::cast(c.ty));
    }
    sql.push_str(") AS u(");
    sql.push_str(&names(columns));
    sql.push(')');
    sql
}

pub(super) fn names(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `sql` with the rows bound as one array per column of `R`, in the
/// column order [`unnest`] gives them. Returns the rows affected.
pub(super) async fn execute_unnest<const N: usize, R: Shape<N>>(
    conn: &mut PgConnection,
    sql: &str,
    rows: &[&R],
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let q = bind_unnest(sqlx::query(sql), rows)?;
    Ok(q.execute(conn).await.map_err(err)?.rows_affected())
}

/// Binds the rows' columns, each gathered into one array: a typed push
/// per value, no per-row allocation beyond the values' own.
fn bind_unnest<'q, const N: usize, R: Shape<N>>(
    mut q: Query<'q, Postgres, PgArguments>,
    rows: &[&'q R],
) -> Result<Query<'q, Postgres, PgArguments>, StoreError> {
    let mut arrays = R::COLUMNS.map(|c| Array::new(c.ty, rows.len()));
    for row in rows {
        for ((array, cell), column) in arrays.iter_mut().zip(row.cells()).zip(&R::COLUMNS) {
            array.push(cell, column)?;
        }
    }
    for array in arrays {
        q = array.bind(q);
    }
    Ok(q)
}

/// `INSERT INTO t (…) SELECT … FROM UNNEST(…)`, with the shape's parent
/// check and conflict clause.
pub(super) fn insert_sql<const N: usize, R: Insert<N>>() -> String {
    let select: Vec<String> = R::COLUMNS
        .iter()
        .map(|c| match c.ty {
            SqlType::TextList => format!("ARRAY(SELECT jsonb_array_elements_text(u.{}))", c.name),
            _ => format!("u.{}", c.name),
        })
        .collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) SELECT {} FROM {}",
        R::TABLE,
        names(&R::COLUMNS),
        select.join(", "),
        unnest(&R::COLUMNS)
    );
    if let Some(p) = R::ONLY_WITH_PARENT {
        let _ = write!(
            sql,
            " WHERE EXISTS (SELECT 1 FROM {} p WHERE p.{} = u.{})",
            p.table,
            p.key,
            R::COLUMNS[p.column].name
        );
    }
    let conflict = R::ON_CONFLICT.sql(&R::COLUMNS);
    if !conflict.is_empty() {
        sql.push(' ');
        sql.push_str(&conflict);
    }
    sql
}

/// Inserts the rows in one statement; returns how many were written.
pub(super) async fn insert<const N: usize, R: Insert<N>>(
    conn: &mut PgConnection,
    rows: &[&R],
) -> Result<u64, StoreError> {
    execute_unnest(conn, &insert_sql::<N, R>(), rows).await
}

/// `SELECT … FROM …` for a record: decimals come back as `float8`, and
/// [`Read::NullIsNow`] columns as the query's time when NULL.
pub(super) fn select<D: Decode>() -> String {
    let mut list = Vec::new();
    for (alias, columns) in D::SELECT {
        for c in columns.iter() {
            let q = if alias.is_empty() {
                c.name.to_owned()
            } else {
                format!("{alias}.{}", c.name)
            };
            list.push(match (c.read, c.ty) {
                (Read::Never, _) => continue,
                (Read::NullIsNow, _) => format!("COALESCE({q}, now()) AS {}", c.name),
                (Read::Plain, SqlType::Decimal) => format!("{q}::float8 AS {}", c.name),
                (Read::Plain, _) => q,
            });
        }
    }
    format!("SELECT {} FROM {}", list.join(", "), D::FROM)
}

impl ReadRow for PgRow {
    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_i32(&self, column: &str) -> Result<Option<i32>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_i64(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_f64(&self, column: &str) -> Result<Option<f64>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_bool(&self, column: &str) -> Result<Option<bool>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_ts(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StoreError> {
        self.try_get(column).map_err(err)
    }
    fn opt_text_list(&self, column: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.try_get(column).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConversationRow, QuestionResponseRow, TenantRecord};

    #[test]
    fn statements_render_from_the_table_descriptions() {
        assert_eq!(
            insert_sql::<9, QuestionResponseRow>(),
            "INSERT INTO question_responses (id, conversation_id, question_text, response_text, \
             intent_classification, knowledge_sources, confidence_score, response_time_ms, \
             created_at) SELECT u.id, u.conversation_id, u.question_text, u.response_text, \
             u.intent_classification, \
             ARRAY(SELECT jsonb_array_elements_text(u.knowledge_sources)), \
             u.confidence_score, u.response_time_ms, u.created_at \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
             $6::jsonb[], $7::float8[], $8::int4[], $9::timestamptz[]) \
             AS u(id, conversation_id, question_text, response_text, intent_classification, \
             knowledge_sources, confidence_score, response_time_ms, created_at) \
             WHERE EXISTS (SELECT 1 FROM conversations p WHERE p.id = u.conversation_id) \
             ON CONFLICT DO NOTHING"
        );
        assert!(
            select::<ConversationRow>()
                .contains(", confidence_score::float8 AS confidence_score, ")
        );
        assert!(select::<TenantRecord>().contains(", COALESCE(created_at, now()) AS created_at"));
    }
}
