//! Every table the hub writes or reads, described once for both SQL
//! stores: its columns in order, how a Rust row becomes one cell per
//! column (`Shape`), what its insert does on a conflict (`Insert`), and
//! how a database row decodes back (`Decode`). The stores render their
//! INSERT, UPSERT and SELECT statements from these lists, so a new column
//! is one line in the list (and its length, the one place a column count
//! is written), one cell and one line in the decoder, all in the table's
//! block (plus the migrations and the field). The compiler holds the list
//! and the cells to the same length; `sql/tests.rs` checks their types.
//!
//! Keyed updates have shapes here too (their key columns first, then the
//! new values), but their `SET` clauses are each store's own: the
//! dialects compute durations and compare booleans differently.
//!
//! * `accounts`: `users` (tenants) and `api_keys`;
//! * `sessions`: `sessions`, `session_state`, `session_participants`;
//! * `history`: the rows a session produces: `conversations`,
//!   `question_responses`, `operator_interventions`, `system_alerts`,
//!   `performance_metrics`;
//! * `jobs`: `jobs`.

mod accounts;
mod history;
mod jobs;
mod sessions;
