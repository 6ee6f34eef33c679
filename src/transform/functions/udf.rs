//! The plumbing shared by every tweet function: argument coercion, scalar handling and the
//! row loops that feed Arrow builders.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, ListArray, ListBuilder, StringBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Float64Type};
use deltalake::datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// What one argument accepts; DataFusion casts the caller's type to the one the kernel reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg {
    /// Utf8, LargeUtf8 or Utf8View, read as they are (no copy); dictionaries are unpacked.
    Text,
    /// Any number, read as Float64.
    Number,
    /// A list of numbers of any list type, read as `List<Float64>`.
    NumberList,
    /// A text, or a list of texts read as `List<Utf8>`.
    TextOrTextList,
}

/// Computes a whole column from argument arrays that have the coerced types.
pub(super) type Kernel = Arc<dyn Fn(&[ArrayRef]) -> Result<ArrayRef> + Send + Sync>;

/// One tweet function: a name, its arguments, its output type and its vectorised kernel.
struct TweetFunction {
    name: &'static str,
    args: &'static [Arg],
    output: DataType,
    kernel: Kernel,
    signature: Signature,
}

/// Builds the UDF `name(args) -> output` computed by `kernel`.
pub(super) fn udf(name: &'static str, args: &'static [Arg], output: DataType, kernel: Kernel) -> ScalarUDF {
    ScalarUDF::new_from_impl(TweetFunction {
        name,
        args,
        output,
        kernel,
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

/// The type of a list of texts, as the extract functions return and `company_of` reads.
pub(super) fn text_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

impl fmt::Debug for TweetFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TweetFunction").field("name", &self.name).finish()
    }
}

// DataFusion compares functions to deduplicate expressions; a name denotes one behaviour.
impl PartialEq for TweetFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TweetFunction {}

impl Hash for TweetFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for TweetFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.output.clone())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != self.args.len() {
            return plan_err!(
                "{} takes {} argument(s), got {}",
                self.name,
                self.args.len(),
                arg_types.len()
            );
        }
        let target = |(position, (arg, given)): (usize, (&Arg, &DataType))| match coerce(*arg, given) {
            Some(target) => Ok(target),
            None => plan_err!(
                "{}: argument {} must be {}, got {given}",
                self.name,
                position + 1,
                describe(*arg)
            ),
        };
        self.args.iter().zip(arg_types).enumerate().map(target).collect()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|arg| matches!(arg, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let output = (self.kernel)(&arrays)?;
        // Constant arguments were computed on one-row arrays: answer with a constant too.
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&output, 0)?))
        } else {
            Ok(ColumnarValue::Array(output))
        }
    }
}

fn coerce(arg: Arg, given: &DataType) -> Option<DataType> {
    match arg {
        Arg::Text => coerce_text(given),
        Arg::Number => (given.is_numeric() || given.is_null()).then_some(DataType::Float64),
        Arg::NumberList => (given.is_null() || list_item(given).is_some_and(DataType::is_numeric))
            .then(|| DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))),
        Arg::TextOrTextList => {
            coerce_text(given).or_else(|| list_item(given).and_then(coerce_text).map(|_| text_list_type()))
        }
    }
}

fn coerce_text(given: &DataType) -> Option<DataType> {
    match given {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(given.clone()),
        DataType::Null => Some(DataType::Utf8),
        DataType::Dictionary(_, values) => coerce_text(values),
        _ => None,
    }
}

fn list_item(given: &DataType) -> Option<&DataType> {
    match given {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            Some(item.data_type())
        }
        _ => None,
    }
}

fn describe(arg: Arg) -> &'static str {
    match arg {
        Arg::Text => "a string",
        Arg::Number => "a number",
        Arg::NumberList => "a list of numbers",
        Arg::TextOrTextList => "a string or a list of strings",
    }
}

/// The rows of a text array (Utf8, LargeUtf8 or Utf8View); None for NULL.
pub(super) fn texts(array: &ArrayRef) -> Result<Box<dyn Iterator<Item = Option<&str>> + '_>> {
    Ok(match array.data_type() {
        DataType::Utf8 => Box::new(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => Box::new(array.as_string::<i64>().iter()),
        DataType::Utf8View => Box::new(array.as_string_view().iter()),
        other => return exec_err!("expected a string array, got {other}"),
    })
}

/// A text column from a text column: `f` writes each row's result into a reused buffer and
/// returns false for NULL.
pub(super) fn map_text(array: &ArrayRef, mut f: impl FnMut(&str, &mut String) -> bool) -> Result<ArrayRef> {
    let mut builder = StringBuilder::with_capacity(array.len(), 0);
    let mut buffer = String::new();
    for text in texts(array)? {
        buffer.clear();
        match text {
            Some(text) if f(text, &mut buffer) => builder.append_value(&buffer),
            _ => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// A `List<Utf8>` column from a text column: `f` appends each row's items (NULL in, NULL out).
pub(super) fn map_text_to_list(
    array: &ArrayRef,
    mut f: impl FnMut(&str, &mut StringBuilder),
) -> Result<ArrayRef> {
    let mut builder = ListBuilder::with_capacity(StringBuilder::new(), array.len());
    for text in texts(array)? {
        if let Some(text) = text {
            f(text, builder.values());
        }
        builder.append(text.is_some());
    }
    Ok(Arc::new(builder.finish()))
}

/// A Float64 column from a text column (NULL in, NULL out).
pub(super) fn map_text_to_f64(array: &ArrayRef, mut f: impl FnMut(&str) -> f64) -> Result<ArrayRef> {
    let mut builder = Float64Builder::with_capacity(array.len());
    for text in texts(array)? {
        builder.append_option(text.map(&mut f));
    }
    Ok(Arc::new(builder.finish()))
}

/// A number argument, which coercion made Float64.
pub(super) fn numbers(array: &ArrayRef) -> Result<&Float64Array> {
    match array.as_primitive_opt::<Float64Type>() {
        Some(numbers) => Ok(numbers),
        None => exec_err!("expected a Float64 array, got {}", array.data_type()),
    }
}

/// A list-of-numbers argument, which coercion made `List<Float64>`.
pub(super) fn number_lists(array: &ArrayRef) -> Result<&ListArray> {
    match array.as_list_opt::<i32>() {
        Some(lists) if lists.value_type() == DataType::Float64 => Ok(lists),
        _ => exec_err!("expected a List<Float64> array, got {}", array.data_type()),
    }
}
