//! How database errors become [`StoreError`]s: "retry later" or "will
//! never work", per dialect.

use crate::store::StoreError;

/// The database a [`classify`]d error came from: they number errors
/// differently.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// Sorts a database error into "retry later" and "will never work".
///
/// Constraint violations, bad data and schema mismatches are
/// [`StoreError::Rejected`]; everything else (connection failures,
/// timeouts, a backend terminated by an administrator, serialization
/// failures, a database shutting down or out of resources) is
/// [`StoreError::Unavailable`], so the writer keeps retrying.
pub(crate) fn classify(dialect: Dialect, e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Database(db) => {
            let rejected = match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation => true,
                sqlx::error::ErrorKind::Other => {
                    db.code().is_some_and(|c| permanent_code(dialect, &c))
                }
                _ => false,
            };
            if rejected {
                StoreError::Rejected(db.message().to_owned())
            } else {
                StoreError::Unavailable(db.message().to_owned())
            }
        }
        E::Encode(_)
        | E::Decode(_)
        | E::ColumnDecode { .. }
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. }
        | E::RowNotFound
        | E::InvalidArgument(_)
        | E::Configuration(_) => StoreError::Rejected(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Error codes no retry can fix.
///
/// PostgreSQL SQLSTATE classes 22 (data exception), 23 (integrity), 42
/// (syntax, undefined table or column), 44 (check option) and 54 (program
/// limit, e.g. an index row too large). Classes such as 08 (connection),
/// 40 (serialization), 53 (resources) and 57 (operator intervention,
/// e.g. `pg_terminate_backend`) are retried.
///
/// SQLite primary result codes (the low byte of the extended code): 1
/// (plain error, e.g. a missing table), 18 (too big), 19 (constraint), 20
/// (mismatch), 25 (range). Busy, locked, I/O and full are retried.
fn permanent_code(dialect: Dialect, code: &str) -> bool {
    match dialect {
        Dialect::Postgres => {
            matches!(code.get(..2), Some("22" | "23" | "42" | "44" | "54"))
        }
        Dialect::Sqlite => code
            .parse::<i64>()
            .is_ok_and(|n| matches!(n & 0xff, 1 | 18 | 19 | 20 | 25)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_codes() {
        let pg = |c| permanent_code(Dialect::Postgres, c);
        assert!(pg("23505"));
        assert!(pg("22003"));
        assert!(pg("42P01"));
        assert!(!pg("57P01"), "a terminated backend is retried");
        assert!(!pg("08006"));
        assert!(!pg("40001"));
        assert!(!pg("53300"), "too many connections is retried");
        let lite = |c| permanent_code(Dialect::Sqlite, c);
        assert!(lite("2067"), "unique constraint");
        assert!(lite("1"));
        assert!(!lite("5"), "busy is retried");
        assert!(!lite("10"), "I/O errors are retried");
    }
}
