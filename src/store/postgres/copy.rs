//! Appending rows with `COPY … FROM STDIN`: the rows of a shape rendered
//! in PostgreSQL's text format and sent as one stream.
//!
//! For append-only tables this is the cheapest way in: no statement to
//! plan, no per-column arrays to build and unpack, and the server parses
//! each value once. It has no conflict clause, so it is used only where a
//! repeated key cannot happen in normal operation (see `write.rs`).

use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::codec::names;
use crate::store::StoreError;
use crate::store::sql::columns::{Cell, Shape};

/// Why a COPY failed.
#[derive(Debug)]
pub(super) enum CopyError {
    /// A row holds a kind of value this text rendering does not cover.
    Rows(StoreError),
    /// The database refused the rows, or the connection failed: as the
    /// driver reported it, so the caller can tell a repeated key apart.
    Db(sqlx::Error),
}

/// Appends the rows to the shape's table; returns how many were written.
pub(super) async fn copy_in<const N: usize, R: Shape<N>>(
    conn: &mut PgConnection,
    rows: &[&R],
) -> Result<u64, CopyError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let data = render(rows).map_err(CopyError::Rows)?;
    let sql = format!("COPY {} ({}) FROM STDIN", R::TABLE, names(&R::COLUMNS));
    let mut copy = conn.copy_in_raw(&sql).await.map_err(CopyError::Db)?;
    if let Err(e) = copy.send(data).await {
        // The connection must leave copy mode before it is used again.
        let _ = copy.abort("eva-hub: sending the rows failed").await;
        return Err(CopyError::Db(e));
    }
    copy.finish().await.map_err(CopyError::Db)
}

/// The rows in COPY's text format: one line per row, columns separated by
/// tabs, `\N` for NULL.
pub(super) fn render<const N: usize, R: Shape<N>>(rows: &[&R]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(rows.len() * 160);
    for row in rows {
        for (i, (cell, column)) in row.cells().into_iter().zip(&R::COLUMNS).enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            if !cell_text(&mut out, cell) {
                return Err(StoreError::Rejected(format!(
                    "column {} of {} cannot be copied",
                    column.name,
                    R::TABLE
                )));
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// Writes one value; false for a kind COPY's text format is not used for
/// here (text lists).
fn cell_text(out: &mut Vec<u8>, cell: Cell<'_>) -> bool {
    match cell {
        Cell::Uuid(v) => or_null(out, v, |o, v: Uuid| {
            let mut buf = Uuid::encode_buffer();
            o.extend_from_slice(v.hyphenated().encode_lower(&mut buf).as_bytes());
        }),
        Cell::Text(v) => or_null(out, v, |o, v| escape(o, v.as_bytes())),
        Cell::Int4(v) => or_null(out, v, |o, v| {
            let _ = write!(o, "{v}");
        }),
        Cell::Int8(v) => or_null(out, v, |o, v| {
            let _ = write!(o, "{v}");
        }),
        Cell::Float8(v) => or_null(out, v, float),
        Cell::Bool(v) => or_null(out, v, |o, v| o.push(if v { b't' } else { b'f' })),
        Cell::Timestamp(v) => or_null(out, v, timestamp),
        Cell::Json(v) => or_null(out, v, |o, v: &Value| {
            // Compact JSON escapes control characters inside strings, so
            // only its backslashes need doubling.
            escape(o, v.to_string().as_bytes());
        }),
        Cell::TextList(_) => return false,
    }
    true
}

fn or_null<T>(out: &mut Vec<u8>, v: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match v {
        Some(v) => write(out, v),
        None => out.extend_from_slice(b"\\N"),
    }
}

/// Rust prints a finite `f64` in plain decimal notation with the fewest
/// digits that read back to the same value, which `numeric` accepts.
fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// UTC, to the microsecond (what `timestamptz` keeps).
fn timestamp(out: &mut Vec<u8>, v: DateTime<Utc>) {
    let _ = write!(out, "{}", v.format("%Y-%m-%d %H:%M:%S%.6f+00"));
}

/// Backslash, tab, newline and carriage return are the text format's
/// delimiters; each is written as its backslash escape.
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SessionId;
    use crate::store::MetricRow;

    #[test]
    fn rows_render_in_copy_text_format() {
        let row = MetricRow {
            id: Uuid::nil(),
            session_id: SessionId(Uuid::max()),
            metric_type: "a\tb\\c\nd".into(),
            metric_value: 0.1,
            unit: None,
            timestamp: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            component: Some("x\ry".into()),
        };
        let text = String::from_utf8(render(&[&row]).unwrap()).unwrap();
        assert_eq!(
            text,
            "00000000-0000-0000-0000-000000000000\tffffffff-ffff-ffff-ffff-ffffffffffff\t\
             a\\tb\\\\c\\nd\t0.1\t\\N\t2023-11-14 22:13:20.123456+00\tx\\ry\n"
        );
    }

    #[test]
    fn floats_keep_every_digit_without_exponents() {
        let mut out = Vec::new();
        float(&mut out, 1e-7);
        out.push(b' ');
        float(&mut out, 123456.0001);
        out.push(b' ');
        float(&mut out, f64::NAN);
        assert_eq!(String::from_utf8(out).unwrap(), "0.0000001 123456.0001 NaN");
    }
}
