//! Files shipped inside the binary, so `tweetlake demo` works from any directory and
//! `tweetlake init` can write an editable project.

use std::path::{Path, PathBuf};

use crate::transform::functions::CompanyMap;
use crate::transform::{ModelSet, TransformError, COMPANIES_FILE, TESTS_DIR};

/// The demo's sample posts: real-shaped X v2 stream messages, a few of them malformed.
pub const SAMPLE_POSTS_NAME: &str = "sample_posts.jsonl";
pub const SAMPLE_POSTS: &[u8] = include_bytes!("../data/sample_posts.jsonl");

/// The documented example configuration.
pub const CONFIG_EXAMPLE: &str = include_str!("../tweetlake.toml");

/// The default SQL models, by path under the SQL directory.
pub const MODELS: &[(&str, &str)] = &[
    ("silver/tweets.sql", include_str!("../sql/silver/tweets.sql")),
    (
        "gold/company_minute.sql",
        include_str!("../sql/gold/company_minute.sql"),
    ),
    (
        "gold/hashtag_hour.sql",
        include_str!("../sql/gold/hashtag_hour.sql"),
    ),
    (
        "gold/cashtag_hour.sql",
        include_str!("../sql/gold/cashtag_hour.sql"),
    ),
    (
        "gold/country_hour.sql",
        include_str!("../sql/gold/country_hour.sql"),
    ),
];

/// The default company list that `company_of` reads, `sql/companies.csv`.
pub const COMPANIES: &str = include_str!("../sql/companies.csv");

/// The built-in models' tests and their fixture posts, by path under `sql/tests/`.
pub const TESTS: &[(&str, &[u8])] = &[
    (
        "silver_tweets.toml",
        include_bytes!("../sql/tests/silver_tweets.toml"),
    ),
    ("edge_cases.toml", include_bytes!("../sql/tests/edge_cases.toml")),
    (
        "edge_cases.jsonl",
        include_bytes!("../sql/tests/edge_cases.jsonl"),
    ),
    ("gold.toml", include_bytes!("../sql/tests/gold.toml")),
    (
        "gold_batches.toml",
        include_bytes!("../sql/tests/gold_batches.toml"),
    ),
    (
        "sentiment_labels.sql",
        include_bytes!("../sql/tests/sentiment_labels.sql"),
    ),
    (
        "dead_letters.sql",
        include_bytes!("../sql/tests/dead_letters.sql"),
    ),
];

/// Saved queries for the REPL, by file name under `queries/`.
pub const QUERIES: &[(&str, &str)] = &[
    ("top_companies.sql", include_str!("../queries/top_companies.sql")),
    ("company_trend.sql", include_str!("../queries/company_trend.sql")),
    ("top_hashtags.sql", include_str!("../queries/top_hashtags.sql")),
    (
        "country_activity.sql",
        include_str!("../queries/country_activity.sql"),
    ),
    ("dlq_triage.sql", include_str!("../queries/dlq_triage.sql")),
    (
        "pipeline_progress.sql",
        include_str!("../queries/pipeline_progress.sql"),
    ),
];

/// The built-in models, as if loaded from `sql/`.
pub fn models(reserved: &[&str]) -> Result<ModelSet, TransformError> {
    models_from(model_sources(), reserved)
}

/// The built-in models' files as [`ModelSet::from_sources`] takes them: path under `sql/`,
/// origin for messages, SQL.
pub fn model_sources() -> Vec<(PathBuf, String, String)> {
    let files = MODELS.iter();
    files
        .map(|(path, sql)| {
            (
                PathBuf::from(path),
                format!("<built-in>/sql/{path}"),
                sql.to_string(),
            )
        })
        .collect()
}

/// Models from `files` (as [`model_sources`] gives them), with the built-in company list.
pub fn models_from(
    files: Vec<(PathBuf, String, String)>,
    reserved: &[&str],
) -> Result<ModelSet, TransformError> {
    ModelSet::from_sources(files, CompanyMap::from_csv_str(COMPANIES)?, reserved)
}

/// Every file `tweetlake init` writes, relative to the project directory.
pub fn project_files() -> Vec<(PathBuf, &'static [u8])> {
    let mut files = vec![
        (PathBuf::from("tweetlake.toml"), CONFIG_EXAMPLE.as_bytes()),
        (PathBuf::from(SAMPLE_POSTS_NAME), SAMPLE_POSTS),
        (Path::new("sql").join(COMPANIES_FILE), COMPANIES.as_bytes()),
    ];
    files.extend(
        MODELS
            .iter()
            .map(|(p, s)| (Path::new("sql").join(p), s.as_bytes())),
    );
    files.extend(
        TESTS
            .iter()
            .map(|(p, s)| (Path::new("sql").join(TESTS_DIR).join(p), *s)),
    );
    files.extend(
        QUERIES
            .iter()
            .map(|(p, s)| (Path::new("queries").join(p), s.as_bytes())),
    );
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files under `dir` (relative, sorted) whose name ends with one of `extensions`, outside
    /// the subdirectory `skip`.
    fn files_under(dir: &str, extensions: &[&str], skip: Option<&str>) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(&root).unwrap().display().to_string();
                if path.is_dir() {
                    if skip != Some(relative.as_str()) {
                        stack.push(path);
                    }
                } else if extensions.iter().any(|e| relative.ends_with(e)) {
                    found.push(relative);
                }
            }
        }
        found.sort();
        found
    }

    fn sorted(files: &[(&str, impl Sized)]) -> Vec<String> {
        let mut names: Vec<String> = files.iter().map(|(p, _)| p.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn every_shipped_model_test_and_query_is_embedded() {
        assert_eq!(sorted(MODELS), files_under("sql", &[".sql"], Some(TESTS_DIR)));
        let tests = format!("sql/{TESTS_DIR}");
        assert_eq!(
            sorted(TESTS),
            files_under(&tests, &[".sql", ".toml", ".jsonl"], None)
        );
        assert_eq!(sorted(QUERIES), files_under("queries", &[".sql"], None));
    }
}
