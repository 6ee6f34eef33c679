//! The lake: a local directory or `s3://bucket/prefix` holding one Delta table per directory,
//! and tweetlake's own `_tweetlake` area. Opening, finding and loading tables lives here; the
//! exactly-once writes live in `sink`, the offset log in `pipeline`, queries in `repl`.

mod discover;
mod failure;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once};

use chrono::{DateTime, Utc};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::logstore::object_store;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStore, Path};
use serde::Deserialize;
use url::Url;

use crate::settings::{string_map, Redacted};

pub use failure::StoreFailure;

/// The `[lake]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// A local directory or `s3://bucket/prefix`.
    pub uri: String,
    /// Passed to delta-rs / object_store (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...).
    #[serde(deserialize_with = "string_map::deserialize")]
    pub storage_options: BTreeMap<String, String>,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            uri: "./lake".into(),
            storage_options: BTreeMap::new(),
        }
    }
}

// Storage options may hold keys (`AWS_SECRET_ACCESS_KEY`): never shown.
impl std::fmt::Debug for LakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeConfig")
            .field("uri", &self.uri)
            .field("storage_options", &Redacted(&self.storage_options))
            .finish()
    }
}

impl LakeConfig {
    pub fn open(&self) -> Result<Lake, LakeError> {
        Lake::new(&self.uri, &self.storage_options)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake uri `{uri}`: {source}")]
    Uri { uri: String, source: DeltaTableError },
    #[error("lake directory {path}: {source}")]
    Directory { path: String, source: std::io::Error },
    #[error("table {table}: {source}{hint}", hint = StoreFailure::of(source).hint())]
    Delta { table: String, source: DeltaTableError },
    /// Registering a table in a DataFusion session.
    #[error("table {table}: {source}")]
    Register { table: String, source: DataFusionError },
    #[error("listing the lake at {path}: {source}{hint}", hint = StoreFailure::of(source).hint())]
    Listing {
        path: String,
        source: object_store::Error,
    },
}

impl LakeError {
    /// Errors that may go away by themselves: reading the store, unless it refused for good.
    /// A bad URI, a directory that cannot be made and a bad table never do.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Delta { source, .. } => !StoreFailure::of(source).is_permanent(),
            Self::Listing { source, .. } => !StoreFailure::of(source).is_permanent(),
            Self::Uri { .. } | Self::Directory { .. } | Self::Register { .. } => false,
        }
    }
}

/// The lake root: a local directory or `s3://bucket/prefix`, and the options to reach it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
}

impl Lake {
    pub fn new(uri: &str, options: &BTreeMap<String, String>) -> Result<Self, LakeError> {
        static HANDLERS: Once = Once::new();
        HANDLERS.call_once(|| deltalake::aws::register_handlers(None));
        let root = deltalake::ensure_table_uri(uri).map_err(|source| LakeError::Uri {
            uri: uri.to_string(),
            source,
        })?;
        Ok(Self {
            root,
            options: options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// `silver.tweets` lives at `<lake>/silver/tweets/`.
    pub fn table_url(&self, name: &str) -> Url {
        self.root
            .join(&format!("{}/", name.replace('.', "/")))
            .expect("table names are valid url segments")
    }

    /// Opens table `name` for writing: a table that does not exist yet is returned unloaded.
    pub async fn open_table(&self, name: &str) -> Result<DeltaTable, LakeError> {
        let url = self.table_url(name);
        if let Ok(dir) = url.to_file_path() {
            // delta-rs opens local tables only in existing directories.
            std::fs::create_dir_all(&dir).map_err(|source| LakeError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut table = self.builder(name)?.build().map_err(delta_error(name))?;
        // Loading a table that does not exist yet logs errors; check first.
        if table
            .verify_deltatable_existence()
            .await
            .map_err(delta_error(name))?
        {
            table.load().await.map_err(delta_error(name))?;
        }
        Ok(table)
    }

    /// Loads the latest version of table `name`, or `None` when it does not exist yet; unlike
    /// [`Self::open_table`], creates nothing.
    pub async fn load_if_exists(&self, name: &str) -> Result<Option<DeltaTable>, LakeError> {
        let url = self.table_url(name);
        if url.to_file_path().is_ok_and(|dir| !dir.exists()) {
            return Ok(None);
        }
        let mut table = self.builder(name)?.build().map_err(delta_error(name))?;
        if !table
            .verify_deltatable_existence()
            .await
            .map_err(delta_error(name))?
        {
            return Ok(None);
        }
        table.load().await.map_err(delta_error(name))?;
        Ok(Some(table))
    }

    /// Loads the latest version of an existing table, reading only its log.
    pub async fn load_table(&self, name: &str) -> Result<DeltaTable, LakeError> {
        self.builder(name)?.load().await.map_err(delta_error(name))
    }

    /// Loads version `version` of table `name` (time travel).
    pub async fn load_version(&self, name: &str, version: u64) -> Result<DeltaTable, LakeError> {
        let builder = self.builder(name)?.with_version(version);
        builder.load().await.map_err(delta_error(name))
    }

    /// Loads the version of table `name` that was current at `time` (time travel).
    pub async fn load_at(&self, name: &str, time: DateTime<Utc>) -> Result<DeltaTable, LakeError> {
        let builder = self.builder(name)?.with_timestamp(time);
        builder.load().await.map_err(delta_error(name))
    }

    fn builder(&self, name: &str) -> Result<DeltaTableBuilder, LakeError> {
        DeltaTableBuilder::from_url(self.table_url(name))
            .map(|b| b.with_storage_options(self.options.clone()))
            .map_err(delta_error(name))
    }

    /// Registers table `name` in `ctx` for querying. Returns false if it does not exist yet.
    pub async fn register_table(&self, ctx: &SessionContext, name: &str) -> Result<bool, LakeError> {
        let table = self.open_table(name).await?;
        if table.version().is_none() {
            return Ok(false);
        }
        let provider = table_provider(ctx, &table, name).await?;
        let reference = crate::transform::table_reference(ctx, name).map_err(register_error(name))?;
        ctx.register_table(reference, provider)
            .map_err(register_error(name))?;
        Ok(true)
    }

    /// The object store holding the lake, and the lake root's path inside it. delta-rs roots
    /// the store at the lake URL (a prefix store), so the root is the store's empty path.
    pub fn object_store(&self) -> Result<(Arc<dyn ObjectStore>, Path), LakeError> {
        let store =
            deltalake::logstore::store_for(&self.root, &self.options).map_err(|source| LakeError::Uri {
                uri: self.root.to_string(),
                source,
            })?;
        Ok((store, Path::default()))
    }

    /// The dotted names of the lake's Delta tables (`bronze`, `silver.tweets`), sorted.
    pub async fn table_names(&self) -> Result<Vec<String>, LakeError> {
        discover::table_names(self).await
    }
}

/// A DataFusion provider for the loaded version of `table`, its store registered in `ctx`;
/// `name` is for messages.
pub async fn table_provider(
    ctx: &SessionContext,
    table: &DeltaTable,
    name: &str,
) -> Result<Arc<dyn TableProvider>, LakeError> {
    table
        .update_datafusion_session(&ctx.state())
        .map_err(delta_error(name))?;
    table.table_provider().await.map_err(register_error(name))
}

/// A Delta error of table `name`.
pub fn delta_error(name: &str) -> impl Fn(DeltaTableError) -> LakeError + '_ {
    move |source| LakeError::Delta {
        table: name.to_string(),
        source,
    }
}

fn register_error(name: &str) -> impl Fn(DataFusionError) -> LakeError + '_ {
    move |source| LakeError::Register {
        table: name.to_string(),
        source,
    }
}
