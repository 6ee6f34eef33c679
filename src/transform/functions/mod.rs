//! The tweet functions for the analysts' SQL models: DataFusion scalar UDFs computed a whole
//! Arrow column at a time.
//!
//! | function | returns |
//! |---|---|
//! | `clean_text(text)` | Utf8: text without URLs, @mentions and `RT @x:`, entities decoded |
//! | `extract_hashtags(text)`, `extract_cashtags(text)` | `List<Utf8>`: lower-cased, no sigil, distinct |
//! | `extract_mentions(text)` | `List<Utf8>`: lower-cased, no `@`, distinct |
//! | `extract_urls(text)` | `List<Utf8>`, distinct |
//! | `sentiment(text)` | Float64: VADER compound score in [-1, 1] |
//! | `sentiment_label(score)` | Utf8: `positive`, `negative` or `neutral` |
//! | `detect_lang(text)` | Utf8: ISO 639-1 code or `und` (a heuristic) |
//! | `company_of(text or list of tags)` | Utf8: company id from `sql/companies.csv` |
//! | `bbox_centroid(bbox)` | `Struct{lon, lat}`: centre of `[west, south, east, north]` |
//! | `point_in_bbox(lon, lat, bbox)` | Boolean |
//! | `haversine_km(lon1, lat1, lon2, lat2)` | Float64: great-circle distance in km |
//! | `pluck(list_of_structs, 'field')` | `List<field type>`: that field of every element |
//! | `find_by(list_of_structs, 'field', key)` | the first element whose `field` equals `key` |
//! | `tag_value(tags, 'key')` | Utf8: the value of the first `key:value` tag |
//!
//! Text arguments may be Utf8, LargeUtf8 or Utf8View; numbers any numeric type. Every function
//! returns NULL for a NULL argument and for input it cannot interpret (an invalid bbox, say); none
//! fails or panics on odd text. Each function's doc comment has its exact rules and a SQL example.

mod company;
mod geo;
mod lang;
mod nested;
mod sentiment;
mod text;
mod udf;

use deltalake::datafusion::logical_expr::ScalarUDF;
use deltalake::datafusion::prelude::SessionContext;

pub use company::{CompanyMap, CompanyMapError};
pub use text::{tags_in, TextTags};

/// Registers every tweet function in `ctx`; `company_of` uses `companies`.
pub fn register_all(ctx: &SessionContext, companies: &CompanyMap) {
    for function in all(companies) {
        ctx.register_udf(function);
    }
}

/// Every tweet function, for callers that register them elsewhere.
pub fn all(companies: &CompanyMap) -> Vec<ScalarUDF> {
    vec![
        text::clean_text(),
        text::extract_hashtags(),
        text::extract_cashtags(),
        text::extract_mentions(),
        text::extract_urls(),
        sentiment::sentiment(),
        sentiment::sentiment_label(),
        lang::detect_lang(),
        company::company_of(companies),
        geo::bbox_centroid(),
        geo::point_in_bbox(),
        geo::haversine_km(),
        nested::pluck(),
        nested::find_by(),
        nested::tag_value(),
    ]
}
