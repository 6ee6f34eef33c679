//! Reading X's nested lists without unnest, joins or aggregates: `includes.users` looked up by
//! id, a field of every matching rule, the value of a `key:value` rule tag. Each is one pass
//! over the column; a model that unnests and re-aggregates instead pays a hash join or a group
//! by per post (measured: the rule aggregation was four fifths of silver's time).

use std::sync::Arc;

use deltalake::arrow::array::{
    make_array, Array, ArrayRef, AsArray, ListArray, StringArray, StringBuilder, StructArray, UInt32Builder,
};
use deltalake::arrow::buffer::NullBuffer;
use deltalake::arrow::compute::take;
use deltalake::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use deltalake::datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::udf::{texts, udf, Arg};

/// `pluck(list_of_structs, 'field') -> List<field's type>`: the field of every element, in
/// order. No copy: the result shares the input's buffers.
///
/// ```sql
/// SELECT pluck(matching_rules, 'tag') FROM bronze;  -- [company:AAPL, topic:earnings]
/// ```
pub(super) fn pluck() -> ScalarUDF {
    ScalarUDF::new_from_impl(ListFunction::new(ListOp::Pluck))
}

/// `find_by(list_of_structs, 'field', key) -> struct`: the first element whose text `field`
/// equals `key` (case-sensitive); NULL when none does or `key` is NULL. For X's expansions,
/// which hold each referenced object once by id.
///
/// ```sql
/// SELECT find_by(includes['users'], 'id', data['author_id'])['username'] FROM bronze;
/// ```
pub(super) fn find_by() -> ScalarUDF {
    ScalarUDF::new_from_impl(ListFunction::new(ListOp::FindBy))
}

/// `tag_value(tags, 'key') -> Utf8`: the text after `key:` in the first of `tags` (a list, or
/// one tag) that starts with it, the key compared case-insensitively, as in rule tags like
/// `company:AAPL`. NULL when no tag has the key or its value is empty.
///
/// ```sql
/// SELECT tag_value(['topic:earnings', 'Company:AAPL'], 'company');  -- AAPL
/// ```
pub(super) fn tag_value() -> ScalarUDF {
    udf(
        "tag_value",
        &[Arg::TextOrTextList, Arg::Text],
        DataType::Utf8,
        Arc::new(|args| {
            let keys: Vec<Option<&str>> = texts(&args[1])?.collect();
            match args[0].as_list_opt::<i32>() {
                Some(lists) => tag_values(lists, &keys),
                None => {
                    let values = texts(&args[0])?
                        .zip(&keys)
                        .map(|(tag, key)| tag.zip(*key).and_then(|(tag, key)| value_of(tag, key)));
                    Ok(Arc::new(values.collect::<StringArray>()))
                }
            }
        }),
    )
}

fn tag_values(lists: &ListArray, keys: &[Option<&str>]) -> Result<ArrayRef> {
    let tags: Vec<Option<&str>> = texts(lists.values())?.collect();
    let offsets = lists.value_offsets();
    let mut builder = StringBuilder::with_capacity(lists.len(), 0);
    for (row, key) in keys.iter().enumerate() {
        let items = &tags[offsets[row] as usize..offsets[row + 1] as usize];
        let value = key
            .filter(|_| lists.is_valid(row))
            .and_then(|key| items.iter().flatten().find_map(|tag| value_of(tag, key)));
        builder.append_option(value);
    }
    Ok(Arc::new(builder.finish()))
}

/// `company:AAPL` with key `company` gives `AAPL`.
fn value_of<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let prefix = tag.get(..key.len())?;
    let value = tag[key.len()..].strip_prefix(':')?;
    (prefix.eq_ignore_ascii_case(key) && !value.is_empty()).then_some(value)
}

/// What a [`ListFunction`] does with the field it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ListOp {
    /// `pluck(list, 'field')`: the field of every element.
    Pluck,
    /// `find_by(list, 'field', key)`: the first element whose field equals the key.
    FindBy,
}

impl ListOp {
    fn name(self) -> &'static str {
        match self {
            Self::Pluck => "pluck",
            Self::FindBy => "find_by",
        }
    }

    fn arity(self) -> usize {
        match self {
            Self::Pluck => 2,
            Self::FindBy => 3,
        }
    }
}

/// `pluck` and `find_by`: their output type depends on the list they read.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ListFunction {
    op: ListOp,
    signature: Signature,
}

impl ListFunction {
    fn new(op: ListOp) -> Self {
        Self {
            op,
            signature: Signature::any(op.arity(), Volatility::Immutable),
        }
    }

    /// The struct fields of the list argument's elements.
    fn element_fields<'a>(&self, list: &'a DataType) -> Result<&'a Fields> {
        match list {
            DataType::List(item) => match item.data_type() {
                DataType::Struct(fields) => Ok(fields),
                other => plan_err!(
                    "{}: argument 1 must be a list of structs, got a list of {other}",
                    self.op.name()
                ),
            },
            other => plan_err!(
                "{}: argument 1 must be a list of structs, got {other}",
                self.op.name()
            ),
        }
    }
}

/// The constant field name of argument 2.
fn field_name<'a>(function: &str, argument: Option<&'a ScalarValue>) -> Result<&'a str> {
    match argument {
        Some(
            ScalarValue::Utf8(Some(name))
            | ScalarValue::Utf8View(Some(name))
            | ScalarValue::LargeUtf8(Some(name)),
        ) => Ok(name),
        _ => plan_err!("{function}: argument 2 must be a constant field name, like 'id'"),
    }
}

impl ScalarUDFImpl for ListFunction {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        unreachable!("return_field_from_args answers instead")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if args.arg_fields.len() != self.op.arity() {
            return plan_err!(
                "{} takes {} arguments, got {}",
                self.op.name(),
                self.op.arity(),
                args.arg_fields.len()
            );
        }
        let list = args.arg_fields[0].data_type();
        let fields = self.element_fields(list)?;
        let name = field_name(self.op.name(), args.scalar_arguments[1])?;
        let Some((_, field)) = fields.find(name) else {
            let known: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
            return plan_err!(
                "{}: the elements have no field `{name}` (they have {})",
                self.op.name(),
                known.join(", ")
            );
        };
        let output = match self.op {
            ListOp::Pluck => DataType::List(Arc::new(Field::new_list_field(field.data_type().clone(), true))),
            ListOp::FindBy => DataType::Struct(fields.clone()),
        };
        Ok(Arc::new(Field::new(self.op.name(), output, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match &args.args[1] {
            ColumnarValue::Scalar(name) => field_name(self.op.name(), Some(name))?.to_string(),
            ColumnarValue::Array(_) => return exec_err!("{}: argument 2 must be a constant", self.op.name()),
        };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(lists) = arrays[0].as_list_opt::<i32>() else {
            return exec_err!(
                "{}: expected a list, got {}",
                self.op.name(),
                arrays[0].data_type()
            );
        };
        let elements = lists.values().as_struct();
        let Some(column) = elements.column_by_name(&name) else {
            return exec_err!("{}: the elements have no field `{name}`", self.op.name());
        };
        let output = match self.op {
            ListOp::Pluck => plucked(lists, elements, column)?,
            ListOp::FindBy => found(lists, elements, column, &arrays[2])?,
        };
        Ok(ColumnarValue::Array(output))
    }
}

/// The list of `column`'s values, with the lists' offsets; a NULL element gives a NULL item.
fn plucked(lists: &ListArray, elements: &StructArray, column: &ArrayRef) -> Result<ArrayRef> {
    let nulls = NullBuffer::union(elements.nulls(), column.nulls());
    let values = make_array(column.to_data().into_builder().nulls(nulls).build()?);
    let item = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(
        item,
        lists.offsets().clone(),
        values,
        lists.nulls().cloned(),
    )?))
}

/// Per row, the first element whose text `column` equals the row's key, or NULL.
fn found(lists: &ListArray, elements: &StructArray, column: &ArrayRef, keys: &ArrayRef) -> Result<ArrayRef> {
    let candidates: Vec<Option<&str>> = texts(column)?.collect();
    let offsets = lists.value_offsets();
    let mut indices = UInt32Builder::with_capacity(lists.len());
    for (row, key) in texts(keys)?.enumerate() {
        let range = offsets[row] as usize..offsets[row + 1] as usize;
        let index = key.filter(|_| lists.is_valid(row)).and_then(|key| {
            range
                .into_iter()
                .find(|&i| elements.is_valid(i) && candidates[i] == Some(key))
        });
        indices.append_option(index.map(|i| i as u32));
    }
    Ok(take(elements, &indices.finish(), None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_value_needs_the_key_a_colon_and_a_value() {
        assert_eq!(value_of("company:AAPL", "company"), Some("AAPL"));
        assert_eq!(value_of("Company:aapl", "company"), Some("aapl"));
        assert_eq!(value_of("company:", "company"), None);
        assert_eq!(value_of("companyAAPL", "company"), None);
        assert_eq!(value_of("comp", "company"), None);
        assert_eq!(value_of("cómpany:X", "company"), None);
    }
}
