//! The shared vocabulary ([`crate::vocab`]) as SQLite column values: each type is stored as
//! its `as_str` spelling, and a spelling this version does not know is a conversion error
//! naming the column's value, never a silent default.

use crate::vocab::{BucketStep, Method, ObjectStatus, SkipReason, Verdict};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

macro_rules! text_column {
    ($t:ty, $what:literal) => {
        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = value.as_str()?;
                <$t>::parse(s).ok_or_else(|| FromSqlError::Other(format!("unknown {} '{s}'", $what).into()))
            }
        }
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
    };
}

text_column!(Method, "method");
text_column!(SkipReason, "skip reason");
text_column!(ObjectStatus, "status");
text_column!(Verdict, "verify verdict");
text_column!(BucketStep, "bucket step");

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn every_spelling_round_trips_and_an_unknown_one_is_an_error() {
        let c = Connection::open_in_memory().unwrap();
        for s in ObjectStatus::ALL {
            let back: ObjectStatus = c.query_row("SELECT ?1", [s], |r| r.get(0)).unwrap();
            assert_eq!(back, s);
        }
        for m in Method::ALL {
            let back: Method = c.query_row("SELECT ?1", [m], |r| r.get(0)).unwrap();
            assert_eq!(back, m);
        }
        for k in SkipReason::ALL {
            let back: SkipReason = c.query_row("SELECT ?1", [k], |r| r.get(0)).unwrap();
            assert_eq!(back, k);
        }
        let err = c.query_row("SELECT 'finished'", [], |r| r.get::<_, ObjectStatus>(0)).unwrap_err();
        assert!(err.to_string().contains("unknown status 'finished'"), "{err}");
    }
}
