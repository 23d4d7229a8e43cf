//! What the SQL stores share, so that PostgreSQL and SQLite differ only
//! where their dialects do:
//! * [`plan`]: how a batch of rows becomes set-based statements, in which
//!   order, and why that equals writing the rows one by one;
//! * [`tables`]: every table described once (columns, row to values,
//!   database row back to record), in the vocabulary of [`columns`];
//! * [`errors`]: how database errors become "retry later" or "rejected".

pub(crate) mod columns;
pub(crate) mod errors;
pub(crate) mod plan;
pub(crate) mod tables;

#[cfg(test)]
mod tests;
