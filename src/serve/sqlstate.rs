//! tweetlake's errors as the Postgres errors clients expect: a SQLSTATE by kind and the message
//! on one line.

use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};
use deltalake::datafusion::common::SchemaError;
use deltalake::datafusion::error::DataFusionError;

use crate::query::QueryError;

pub const SYNTAX_ERROR: &str = "42601";
const UNDEFINED_TABLE: &str = "42P01";
const UNDEFINED_COLUMN: &str = "42703";
const UNDEFINED_FUNCTION: &str = "42883";
const FEATURE_NOT_SUPPORTED: &str = "0A000";
const READ_ONLY_SQL_TRANSACTION: &str = "25006";
const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
const OUT_OF_MEMORY: &str = "53200";
const QUERY_CANCELED: &str = "57014";
const INVALID_PARAMETER_VALUE: &str = "22023";
const IO_ERROR: &str = "58030";
const INTERNAL_ERROR: &str = "XX000";

/// `error` as the ErrorResponse a client gets.
pub fn pg_error(error: QueryError) -> PgWireError {
    let code = code(&error);
    let message = match &error {
        QueryError::Sql(e) if code == OUT_OF_MEMORY => {
            format!("query stopped: it needs more memory than serve.memory_limit gives each query ({e})")
        }
        _ => error.to_string(),
    };
    user_error(code, &message)
}

/// An ErrorResponse with `code` and `message` on one line.
pub fn user_error(code: &str, message: &str) -> PgWireError {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message,
    )))
}

fn code(error: &QueryError) -> &'static str {
    match error {
        QueryError::Sql(e) => datafusion_code(e),
        QueryError::NoSuchTable { .. } => UNDEFINED_TABLE,
        QueryError::ReadOnly { .. } => READ_ONLY_SQL_TRANSACTION,
        QueryError::ScanLimit { .. } => PROGRAM_LIMIT_EXCEEDED,
        QueryError::Timeout(_) | QueryError::Cancelled => QUERY_CANCELED,
        QueryError::TimeTravel(_) => INVALID_PARAMETER_VALUE,
        QueryError::Lake(_) | QueryError::Delta(_) => IO_ERROR,
        QueryError::Arrow(_) => INTERNAL_ERROR,
    }
}

fn datafusion_code(error: &DataFusionError) -> &'static str {
    match error.find_root() {
        DataFusionError::SQL(..) => SYNTAX_ERROR,
        DataFusionError::ResourcesExhausted(_) => OUT_OF_MEMORY,
        DataFusionError::SchemaError(e, _) if matches!(**e, SchemaError::FieldNotFound { .. }) => {
            UNDEFINED_COLUMN
        }
        DataFusionError::Plan(message)
            if message.starts_with("table '") && message.ends_with("not found") =>
        {
            UNDEFINED_TABLE
        }
        DataFusionError::Plan(message) if message.starts_with("Invalid function") => UNDEFINED_FUNCTION,
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        _ => INTERNAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlstate(error: DataFusionError) -> String {
        match pg_error(QueryError::from(error)) {
            PgWireError::UserError(info) => info.code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn datafusion_errors_get_the_codes_clients_know() {
        let missing = DataFusionError::Plan("table 'datafusion.silver.nope' not found".into());
        assert_eq!(sqlstate(missing), UNDEFINED_TABLE);
        let memory = DataFusionError::ResourcesExhausted("Failed to allocate".into());
        assert_eq!(sqlstate(memory.context("running")), OUT_OF_MEMORY);
        let function = DataFusionError::Plan("Invalid function 'nope'.".into());
        assert_eq!(sqlstate(function), UNDEFINED_FUNCTION);
    }
}
