//! The offset log: the pipeline's source of truth for what each batch reads.
//!
//! Layout under `<lake>/_tweetlake/<pipeline>/`:
//! - `offsets/<batch id>.json`: the plan, written with put-if-absent before the batch runs;
//! - `commits/<batch id>.json`: the marker, written after every table committed the batch.
//!
//! A plan without a marker is re-run with exactly its ranges on the next start.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use deltalake::logstore::object_store::{self, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use deltalake::{ObjectStore, Path};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::source::{OffsetRange, Positions};

/// Batch ids are zero-padded so that names sort in batch order.
const ID_WIDTH: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("offset log {path}: {source}")]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("offset log {path} is not a valid tweetlake log entry: {message}")]
    Corrupt { path: String, message: String },
    #[error("batch {batch_id} was already planned at {path} by another tweetlake run of pipeline `{pipeline}`: run one instance per pipeline name (or give each its own pipeline.name)")]
    Conflict {
        batch_id: u64,
        path: String,
        pipeline: String,
    },
}

/// What one batch reads: written before the batch runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    pub batch_id: u64,
    /// RFC 3339 UTC; every row of the batch carries it as `_ingested_at`.
    pub planned_at: String,
    pub source: String,
    /// One range per known partition (empty ranges keep idle partitions' positions).
    pub ranges: Vec<OffsetRange>,
}

impl BatchPlan {
    pub fn new(batch_id: u64, planned_at: DateTime<Utc>, source: String, ranges: Vec<OffsetRange>) -> Self {
        Self {
            batch_id,
            planned_at: planned_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            source,
            ranges,
        }
    }

    pub fn planned_at_micros(&self) -> i64 {
        DateTime::parse_from_rfc3339(&self.planned_at).map_or(0, |t| t.timestamp_micros())
    }

    /// Where the batch after this one starts.
    pub fn next_positions(&self) -> Positions {
        self.ranges.iter().map(|r| (r.topic_partition(), r.end)).collect()
    }

    pub fn record_span(&self) -> i64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }
}

/// Written once every table holds the batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitMarker {
    pub batch_id: u64,
    pub committed_at: String,
    pub rows: BTreeMap<String, usize>,
}

/// Where a pipeline stands, read from its log on start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogState {
    /// No batch was ever planned.
    Fresh,
    /// The latest batch is committed; the next starts at its ends.
    Committed(BatchPlan),
    /// The latest batch was planned but not committed: re-run it with the same ranges.
    Pending(BatchPlan),
}

pub struct OffsetLog {
    store: Arc<dyn ObjectStore>,
    root: Path,
    pipeline: String,
}

impl OffsetLog {
    /// The log of `pipeline` under the lake root `lake_root` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, lake_root: &Path, pipeline: &str) -> Self {
        Self {
            store,
            root: lake_root.clone().join("_tweetlake").join(pipeline),
            pipeline: pipeline.to_string(),
        }
    }

    fn entry(&self, kind: &str, batch_id: u64) -> Path {
        self.root
            .clone()
            .join(kind)
            .join(format!("{batch_id:0width$}.json", width = ID_WIDTH).as_str())
    }

    fn store_error(path: &Path) -> impl FnOnce(object_store::Error) -> CheckpointError + '_ {
        move |source| CheckpointError::Store {
            path: path.to_string(),
            source,
        }
    }

    async fn ids(&self, kind: &str) -> Result<Vec<u64>, CheckpointError> {
        let prefix = self.root.clone().join(kind);
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(Self::store_error(&prefix))?;
        let mut ids: Vec<u64> = listed
            .iter()
            .filter_map(|meta| meta.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    async fn read<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<Option<T>, CheckpointError> {
        let bytes = match self.store.get(path).await {
            Ok(result) => result.bytes().await.map_err(Self::store_error(path))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Self::store_error(path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                path: path.to_string(),
                message: e.to_string(),
            })
    }

    pub async fn state(&self) -> Result<LogState, CheckpointError> {
        let Some(&latest) = self.ids("offsets").await?.last() else {
            return Ok(LogState::Fresh);
        };
        let path = self.entry("offsets", latest);
        let plan: BatchPlan = self.read(&path).await?.ok_or_else(|| CheckpointError::Corrupt {
            path: path.to_string(),
            message: "listed but not readable".into(),
        })?;
        let committed = self
            .read::<CommitMarker>(&self.entry("commits", latest))
            .await?
            .is_some();
        Ok(if committed {
            LogState::Committed(plan)
        } else {
            LogState::Pending(plan)
        })
    }

    async fn put_if_absent(&self, path: &Path, body: Vec<u8>) -> Result<bool, CheckpointError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(path, PutPayload::from(body), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(Self::store_error(path)(e)),
        }
    }

    /// Records a plan before its batch runs. A plan already there with other ranges means
    /// another process owns this pipeline name.
    pub async fn write_plan(&self, plan: &BatchPlan) -> Result<(), CheckpointError> {
        let path = self.entry("offsets", plan.batch_id);
        let body = serde_json::to_vec_pretty(plan).expect("plans serialize");
        if self.put_if_absent(&path, body).await? {
            return Ok(());
        }
        match self.read::<BatchPlan>(&path).await? {
            Some(existing) if existing.ranges == plan.ranges => Ok(()),
            _ => Err(CheckpointError::Conflict {
                batch_id: plan.batch_id,
                path: path.to_string(),
                pipeline: self.pipeline.clone(),
            }),
        }
    }

    /// Marks a batch committed; writing the same marker twice is harmless.
    pub async fn write_commit(&self, marker: &CommitMarker) -> Result<(), CheckpointError> {
        let path = self.entry("commits", marker.batch_id);
        let body = serde_json::to_vec_pretty(marker).expect("markers serialize");
        self.put_if_absent(&path, body).await.map(|_| ())
    }

    /// Deletes log entries older than `keep_from`, keeping the log small on long-running pipelines.
    pub async fn purge_before(&self, keep_from: u64) -> Result<(), CheckpointError> {
        for kind in ["commits", "offsets"] {
            for id in self.ids(kind).await?.into_iter().take_while(|&id| id < keep_from) {
                let path = self.entry(kind, id);
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Self::store_error(&path)(e)),
                }
            }
        }
        Ok(())
    }
}
