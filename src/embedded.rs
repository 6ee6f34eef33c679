//! Files shipped inside the binary, so `tweetlake demo` works from any directory and
//! `tweetlake init` can write an editable project.

use std::path::{Path, PathBuf};

use crate::transform::functions::CompanyMap;
use crate::transform::{ModelSet, TransformError, COMPANIES_FILE};

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

/// Saved queries for the REPL, by file name under `queries/`.
pub const QUERIES: &[(&str, &str)] = &[
    ("top_companies.sql", include_str!("../queries/top_companies.sql")),
    ("dlq_triage.sql", include_str!("../queries/dlq_triage.sql")),
];

/// The built-in models, as if loaded from `sql/`.
pub fn models(reserved: &[&str]) -> Result<ModelSet, TransformError> {
    let files = MODELS
        .iter()
        .map(|(path, sql)| {
            (
                PathBuf::from(path),
                format!("<built-in>/sql/{path}"),
                sql.to_string(),
            )
        })
        .collect();
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
        QUERIES
            .iter()
            .map(|(p, s)| (Path::new("queries").join(p), s.as_bytes())),
    );
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &str) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut found = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "sql") {
                    found.push(path.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn every_shipped_model_and_query_is_embedded() {
        let mut models: Vec<String> = MODELS.iter().map(|(p, _)| p.to_string()).collect();
        models.sort();
        assert_eq!(models, files_under("sql"));
        let mut queries: Vec<String> = QUERIES.iter().map(|(p, _)| p.to_string()).collect();
        queries.sort();
        assert_eq!(queries, files_under("queries"));
    }
}
