//! The vocabulary the table descriptions (the `tables` module) are
//! written in: column types, one row's values as dialect-neutral [`Cell`]s, the
//! [`Shape`] of a table's rows, what an [`Insert`] does on a conflict, and
//! the [`ReadRow`] trait through which a database row is decoded. Each
//! store binds and renders these its own way: PostgreSQL as one array per
//! column for `UNNEST`, SQLite as one placeholder per value.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::store::StoreError;

/// A column's type as the hub writes and reads it; each store maps it to
/// its own storage (docs/SCHEMA.md, "SQLite").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SqlType {
    Uuid,
    Text,
    Int4,
    Int8,
    /// `DECIMAL(p,s)` in the schema, `f64` in the hub: written as a
    /// double (the database rounds it to the column's scale) and read back
    /// as one.
    Decimal,
    Bool,
    Timestamp,
    Json,
    /// A list of strings: `TEXT[]` on PostgreSQL, a JSON array in TEXT on
    /// SQLite.
    TextList,
}

/// How the hub's SELECTs read a column.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Read {
    Plain,
    /// Written, never read back.
    Never,
    /// A NULL (which only another writer leaves: the hub always sets the
    /// column) reads as the time of the query on PostgreSQL. SQLite reads
    /// it as NULL, which decodes as the epoch; both have always done so.
    NullIsNow,
}

/// One column of a table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub ty: SqlType,
    pub read: Read,
}

impl Column {
    pub(crate) const fn write_only(self) -> Column {
        Column {
            read: Read::Never,
            ..self
        }
    }

    pub(crate) const fn null_is_now(self) -> Column {
        Column {
            read: Read::NullIsNow,
            ..self
        }
    }
}

/// Column constructors, one per [`SqlType`], for the tables' lists.
pub(crate) mod col {
    use super::{Column, Read, SqlType};

    const fn new(name: &'static str, ty: SqlType) -> Column {
        Column {
            name,
            ty,
            read: Read::Plain,
        }
    }
    pub(crate) const fn uuid(name: &'static str) -> Column {
        new(name, SqlType::Uuid)
    }
    pub(crate) const fn text(name: &'static str) -> Column {
        new(name, SqlType::Text)
    }
    pub(crate) const fn int4(name: &'static str) -> Column {
        new(name, SqlType::Int4)
    }
    pub(crate) const fn int8(name: &'static str) -> Column {
        new(name, SqlType::Int8)
    }
    pub(crate) const fn decimal(name: &'static str) -> Column {
        new(name, SqlType::Decimal)
    }
    pub(crate) const fn bool(name: &'static str) -> Column {
        new(name, SqlType::Bool)
    }
    pub(crate) const fn timestamp(name: &'static str) -> Column {
        new(name, SqlType::Timestamp)
    }
    pub(crate) const fn json(name: &'static str) -> Column {
        new(name, SqlType::Json)
    }
    pub(crate) const fn text_list(name: &'static str) -> Column {
        new(name, SqlType::TextList)
    }
}

/// One value of a row, typed, borrowed from the row where it can be;
/// `None` is NULL. Built with `.into()` from the Rust value, so a column's
/// cell has the same variant in every row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cell<'a> {
    Uuid(Option<Uuid>),
    Text(Option<&'a str>),
    Int4(Option<i32>),
    Int8(Option<i64>),
    /// For [`SqlType::Decimal`] columns.
    Float8(Option<f64>),
    Bool(Option<bool>),
    Timestamp(Option<DateTime<Utc>>),
    Json(Option<&'a Value>),
    TextList(&'a [String]),
}

macro_rules! cell_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl<'a> From<$t> for Cell<'a> {
            fn from(v: $t) -> Cell<'a> {
                Cell::$variant(Some(v))
            }
        }
        impl<'a> From<Option<$t>> for Cell<'a> {
            fn from(v: Option<$t>) -> Cell<'a> {
                Cell::$variant(v)
            }
        }
    )*};
}

cell_from! {
    Uuid => Uuid,
    &'a str => Text,
    i32 => Int4,
    i64 => Int8,
    f64 => Float8,
    bool => Bool,
    DateTime<Utc> => Timestamp,
    &'a Value => Json,
}

impl<'a> From<&'a String> for Cell<'a> {
    fn from(v: &'a String) -> Cell<'a> {
        Cell::Text(Some(v))
    }
}

impl<'a> From<&'a Vec<String>> for Cell<'a> {
    fn from(v: &'a Vec<String>) -> Cell<'a> {
        Cell::TextList(v)
    }
}

/// The rows of one table, or the key and new values of a keyed update:
/// the columns in order, and each row's values in the same order. `N`
/// ties the two lists' lengths together at compile time; the tables'
/// tests (`sql/tests.rs`) check that each cell fits its column's type.
pub(crate) trait Shape<const N: usize> {
    const TABLE: &'static str;
    const COLUMNS: [Column; N];
    fn cells(&self) -> [Cell<'_>; N];
}

/// A [`Shape`] whose rows are inserted, and what the insert does beyond
/// writing them. Both stores render one statement from this for any
/// number of rows.
pub(crate) trait Insert<const N: usize>: Shape<N> {
    /// Rows whose parent is missing are skipped rather than failing the
    /// batch.
    const ONLY_WITH_PARENT: Option<Parent> = None;
    const ON_CONFLICT: OnConflict;
}

/// The row another row belongs to: `table.key = <our column>`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Parent {
    pub table: &'static str,
    pub key: &'static str,
    /// Position of the referencing column in the [`Shape`]'s columns.
    pub column: usize,
}

impl Parent {
    /// Panics, at compile time when used in a constant, if `columns` has
    /// no column `ours`.
    pub(crate) const fn new(
        table: &'static str,
        key: &'static str,
        columns: &[Column],
        ours: &str,
    ) -> Parent {
        let mut i = 0;
        while i < columns.len() {
            if str_eq(columns[i].name, ours) {
                return Parent {
                    table,
                    key,
                    column: i,
                };
            }
            i += 1;
        }
        panic!("no such column");
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What an insert does with a row whose key exists. The clauses are the
/// same text in both dialects.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OnConflict {
    /// The statement fails.
    Fail,
    /// The row is skipped, whichever unique key it repeats.
    Skip,
    /// The row is skipped if it repeats these key columns.
    SkipOn(&'static str),
    /// Every column but these key columns takes the new row's value.
    UpdateOn(&'static str),
    /// Any other clause.
    Sql(&'static str),
}

impl OnConflict {
    pub(crate) fn sql(&self, columns: &[Column]) -> Cow<'static, str> {
        match *self {
            OnConflict::Fail => "".into(),
            OnConflict::Skip => "ON CONFLICT DO NOTHING".into(),
            OnConflict::SkipOn(key) => format!("ON CONFLICT ({key}) DO NOTHING").into(),
            OnConflict::UpdateOn(key) => {
                let keys: Vec<&str> = key.split(',').map(str::trim).collect();
                let set: Vec<String> = columns
                    .iter()
                    .filter(|c| !keys.contains(&c.name))
                    .map(|c| format!("{0} = excluded.{0}", c.name))
                    .collect();
                format!("ON CONFLICT ({key}) DO UPDATE SET {}", set.join(", ")).into()
            }
            OnConflict::Sql(s) => s.into(),
        }
    }
}

/// A record read back from the database: which columns to select from
/// where, and how a row decodes. The stores add their own `WHERE` and
/// `ORDER BY`.
pub(crate) trait Decode: Sized {
    /// The columns to select, each group with the table alias it is read
    /// from ("" for none); columns that are [`Read::Never`] are left out.
    const SELECT: &'static [(&'static str, &'static [Column])];
    /// The `FROM` clause, without the keyword.
    const FROM: &'static str;
    fn decode(row: &impl ReadRow) -> Result<Self, StoreError>;
}

/// A database row, read by column name in the hub's types. Each store
/// implements the `opt_` readers for its row type (PostgreSQL has native
/// UUIDs, timestamps, JSON and arrays; SQLite stores them as text); the
/// rest follow.
pub(crate) trait ReadRow {
    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn opt_i32(&self, column: &str) -> Result<Option<i32>, StoreError>;
    fn opt_i64(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn opt_f64(&self, column: &str) -> Result<Option<f64>, StoreError>;
    fn opt_bool(&self, column: &str) -> Result<Option<bool>, StoreError>;
    fn opt_ts(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StoreError>;
    fn opt_text_list(&self, column: &str) -> Result<Option<Vec<String>>, StoreError>;

    fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
        required(column, self.opt_uuid(column)?)
    }
    fn text(&self, column: &str) -> Result<String, StoreError> {
        required(column, self.opt_text(column)?)
    }
    fn i64(&self, column: &str) -> Result<i64, StoreError> {
        required(column, self.opt_i64(column)?)
    }
    /// A timestamp; NULL reads as the epoch.
    fn ts_or_epoch(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.opt_ts(column)?.unwrap_or_default())
    }
    /// JSON; NULL reads as `{}`.
    fn json_or_empty(&self, column: &str) -> Result<Value, StoreError> {
        Ok(self
            .opt_json(column)?
            .unwrap_or_else(|| Value::Object(Default::default())))
    }
}

fn required<T>(column: &str, v: Option<T>) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Rejected(format!("unexpected NULL in column {column}")))
}

/// Seed 000 keeps counters in INTEGER columns; larger values are stored as
/// the largest INTEGER.
pub(crate) fn int4(v: u64) -> i32 {
    v.min(i32::MAX as u64) as i32
}

/// A stored INTEGER counter back to its type; negatives (never written by
/// the hub) read as 0.
pub(crate) fn count<T: TryFrom<i64> + Default>(v: Option<i32>) -> T {
    T::try_from(i64::from(v.unwrap_or(0).max(0))).unwrap_or_default()
}

/// A stream position as BIGINT.
pub(crate) fn int8(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `LIMIT` for a page: at most `i64::MAX`.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Unix milliseconds (0 = never) as a nullable timestamp.
pub(crate) fn ms_to_ts(ms: u64) -> Option<DateTime<Utc>> {
    if ms == 0 {
        None
    } else {
        DateTime::from_timestamp_millis(ms.min(i64::MAX as u64) as i64)
    }
}

pub(crate) fn ts_to_ms(ts: Option<DateTime<Utc>>) -> u64 {
    ts.map_or(0, |t| t.timestamp_millis().max(0) as u64)
}

/// Parses a snake_case enum stored as text (status, severity, types).
pub(crate) fn parse_enum<T: DeserializeOwned>(column: &str, value: &str) -> Result<T, StoreError> {
    serde_json::from_value(Value::String(value.to_owned()))
        .map_err(|_| StoreError::Rejected(format!("unexpected value {value:?} in column {column}")))
}
