//! `current_setting(name)`, which clients read the server version and search path with
//! (Grafana's data source asks for `server_version_num`).

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::{exec_err, ScalarValue};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};

/// The settings a client may read, as the server parameters at startup say them (pgwire's
/// server_version is 16.6).
const SETTINGS: &[(&str, &str)] = &[
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("search_path", "public"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("timezone", "Etc/UTC"),
    ("datestyle", "ISO, YMD"),
    ("standard_conforming_strings", "on"),
    ("default_transaction_read_only", "on"),
];

pub fn current_setting() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| match &args[0] {
            ColumnarValue::Scalar(name) => {
                let value = match name.try_as_str().flatten() {
                    Some(name) => Some(setting(name)?),
                    None => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value.map(String::from))))
            }
            ColumnarValue::Array(names) => {
                let names = names.as_string::<i32>();
                let values: Vec<Option<&str>> = (0..names.len())
                    .map(|i| names.is_valid(i).then(|| setting(names.value(i))).transpose())
                    .collect::<Result<_>>()?;
                Ok(ColumnarValue::Array(
                    Arc::new(StringArray::from(values)) as ArrayRef
                ))
            }
        }),
    )
}

fn setting(name: &str) -> Result<&'static str> {
    let lower = name.to_ascii_lowercase();
    match SETTINGS.iter().find(|(key, _)| *key == lower) {
        Some((_, value)) => Ok(value),
        None => exec_err!("unrecognized configuration parameter \"{name}\""),
    }
}
