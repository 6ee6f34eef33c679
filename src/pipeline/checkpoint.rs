//! The offset log: the pipeline's source of truth for what each batch reads.
//!
//! Layout under `<lake>/_tweetlake/<pipeline>/`:
//! - `batches/<batch id>.json`: a batch's plan (all its ranges). It is written with put-if-absent,
//!   which allocates the id: instances sharing a pipeline name never reuse one.
//! - `partitions/<topic>/<partition>/<start>.json`: a claim on one range of one partition, also
//!   put-if-absent. A partition's claims form a chain (each starts where the previous ended), so
//!   two instances can never claim overlapping ranges: the second put finds the first.
//! - `partitions/<topic>/<partition>/<start>.done`: written once every table holds the range.
//!
//! On start, and whenever the partitions it owns change, an instance reads the latest claim of
//! each owned partition: done means resume at its end; not done means re-run exactly that range.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use deltalake::logstore::object_store::{self, ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use deltalake::{ObjectStore, Path};
use futures::future::try_join_all;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::source::{OffsetRange, Positions, TopicPartition};

/// Ids and offsets are zero-padded so that names sort in numeric order.
const ID_WIDTH: usize = 20;

/// How many times a batch id is re-allocated when other instances keep taking the next one.
const MAX_ID_ATTEMPTS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("offset log {path}: {source}{hint}", hint = crate::lake::StoreFailure::of(source).hint())]
    Store {
        path: String,
        source: object_store::Error,
    },
    #[error("offset log {path} is not a valid tweetlake log entry: {message}")]
    Corrupt { path: String, message: String },
    /// Another instance claimed the range first (it took over the partition): the batch must not run.
    #[error(
        "{range} was already claimed by batch {other_batch} of another instance of pipeline `{pipeline}`"
    )]
    ClaimTaken {
        range: String,
        other_batch: u64,
        pipeline: String,
    },
    #[error("could not allocate a batch id in {path}: other instances took {MAX_ID_ATTEMPTS} in a row")]
    IdContention { path: String },
}

/// What one batch reads: written before the batch runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPlan {
    pub batch_id: u64,
    /// RFC 3339 UTC; every row of the batch carries it as `_ingested_at`.
    pub planned_at: String,
    pub source: String,
    /// One range per owned partition (empty ranges keep idle partitions' positions).
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

    /// The UTC day the batch was planned (a re-run plans nothing: it keeps the day).
    pub fn planned_on(&self) -> NaiveDate {
        DateTime::from_timestamp_micros(self.planned_at_micros())
            .unwrap_or_default()
            .date_naive()
    }

    /// Where the batch after this one starts.
    pub fn next_positions(&self) -> Positions {
        self.ranges.iter().map(|r| (r.topic_partition(), r.end)).collect()
    }

    /// The ranges that hold records (only those are claimed).
    pub fn claimed_ranges(&self) -> impl Iterator<Item = &OffsetRange> {
        self.ranges.iter().filter(|r| r.end > r.start)
    }
}

/// One partition's range of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub batch_id: u64,
    pub planned_at: String,
    pub range: OffsetRange,
}

/// Where one partition stands, read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionState {
    /// No range of this partition was ever claimed.
    Fresh,
    /// The latest claimed range is committed; the next starts at `next`.
    Committed { next: i64 },
    /// The latest claimed range was not committed: re-run it exactly.
    Pending(Claim),
}

#[derive(Debug, Serialize, Deserialize)]
struct DoneMarker {
    batch_id: u64,
    committed_at: String,
}

pub struct OffsetLog {
    store: Arc<dyn ObjectStore>,
    root: Path,
    pipeline: String,
    /// The id this instance tries next; moves past ids other instances took.
    next_id: Option<u64>,
}

impl OffsetLog {
    /// The log of `pipeline` under the lake root `lake_root` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, lake_root: &Path, pipeline: &str) -> Self {
        Self {
            store,
            root: lake_root.clone().join("_tweetlake").join(pipeline),
            pipeline: pipeline.to_string(),
            next_id: None,
        }
    }

    fn batch_path(&self, batch_id: u64) -> Path {
        self.root
            .clone()
            .join("batches")
            .join(format!("{batch_id:0ID_WIDTH$}.json").as_str())
    }

    fn partition_dir(&self, tp: &TopicPartition) -> Path {
        self.root
            .clone()
            .join("partitions")
            .join(tp.topic.as_str())
            .join(tp.partition.to_string().as_str())
    }

    fn claim_path(&self, tp: &TopicPartition, start: i64, suffix: &str) -> Path {
        self.partition_dir(tp)
            .join(format!("{start:0ID_WIDTH$}.{suffix}").as_str())
    }

    fn store_error(path: &Path) -> impl FnOnce(object_store::Error) -> CheckpointError + '_ {
        move |source| CheckpointError::Store {
            path: path.to_string(),
            source,
        }
    }

    async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, CheckpointError> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(Self::store_error(prefix))
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

    async fn read_existing<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<T, CheckpointError> {
        self.read(path).await?.ok_or_else(|| CheckpointError::Corrupt {
            path: path.to_string(),
            message: "listed but not readable".into(),
        })
    }

    async fn put_if_absent(&self, path: &Path, body: Vec<u8>) -> Result<bool, CheckpointError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(path, PutPayload::from(body), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(false)
            }
            Err(e) => Err(Self::store_error(path)(e)),
        }
    }

    /// Where `tp` stands: one listing, plus one read of its latest claim.
    pub async fn partition_state(&self, tp: &TopicPartition) -> Result<PartitionState, CheckpointError> {
        let listed = self.list(&self.partition_dir(tp)).await?;
        let latest = listed.iter().filter_map(|meta| entry_start(meta, "json")).max();
        let Some(start) = latest else {
            return Ok(PartitionState::Fresh);
        };
        let done = listed.iter().any(|meta| entry_start(meta, "done") == Some(start));
        let claim: Claim = self.read_existing(&self.claim_path(tp, start, "json")).await?;
        Ok(if done {
            PartitionState::Committed {
                next: claim.range.end,
            }
        } else {
            PartitionState::Pending(claim)
        })
    }

    /// Where a partition that has no claim yet starts: the first call records `proposed`
    /// (put-if-absent), later ones return what was recorded, so a restart with
    /// `starting_offsets = latest` cannot skip what arrived in a still-idle partition.
    pub async fn pin_origin(&self, tp: &TopicPartition, proposed: i64) -> Result<i64, CheckpointError> {
        let path = self.partition_dir(tp).join("origin.json");
        if self
            .put_if_absent(&path, proposed.to_string().into_bytes())
            .await?
        {
            return Ok(proposed);
        }
        self.read_existing(&path).await
    }

    /// The states of several partitions, read concurrently (each is a round trip on S3).
    pub async fn partition_states(
        &self,
        tps: impl Iterator<Item = &TopicPartition>,
    ) -> Result<Vec<PartitionState>, CheckpointError> {
        try_join_all(tps.map(|tp| self.partition_state(tp))).await
    }

    async fn first_free_id(&self) -> Result<u64, CheckpointError> {
        let prefix = self.root.clone().join("batches");
        let listed = self.list(&prefix).await?;
        Ok(listed
            .iter()
            .filter_map(|meta| {
                meta.location
                    .filename()?
                    .strip_suffix(".json")?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .map_or(0, |id| id + 1))
    }

    /// Records a new batch before it runs: allocates its id, then claims each non-empty range.
    /// A claim another instance holds fails the plan with [`CheckpointError::ClaimTaken`]; claims
    /// already made for it stay, and are re-run as pending by whoever owns those partitions.
    pub async fn plan(
        &mut self,
        planned_at: DateTime<Utc>,
        source: String,
        ranges: Vec<OffsetRange>,
    ) -> Result<BatchPlan, CheckpointError> {
        let mut plan = BatchPlan::new(0, planned_at, source, ranges);
        for _ in 0..MAX_ID_ATTEMPTS {
            plan.batch_id = match self.next_id {
                Some(id) => id,
                None => self.first_free_id().await?,
            };
            let body = serde_json::to_vec_pretty(&plan).expect("plans serialize");
            if self.put_if_absent(&self.batch_path(plan.batch_id), body).await? {
                self.next_id = Some(plan.batch_id + 1);
                try_join_all(plan.claimed_ranges().map(|r| self.claim(&plan, r))).await?;
                return Ok(plan);
            }
            self.next_id = None; // another instance took it: list again
        }
        Err(CheckpointError::IdContention {
            path: self.root.clone().join("batches").to_string(),
        })
    }

    async fn claim(&self, plan: &BatchPlan, range: &OffsetRange) -> Result<(), CheckpointError> {
        let claim = Claim {
            batch_id: plan.batch_id,
            planned_at: plan.planned_at.clone(),
            range: range.clone(),
        };
        let path = self.claim_path(&range.topic_partition(), range.start, "json");
        let body = serde_json::to_vec_pretty(&claim).expect("claims serialize");
        if self.put_if_absent(&path, body).await? {
            return Ok(());
        }
        let existing: Claim = self.read_existing(&path).await?;
        Err(CheckpointError::ClaimTaken {
            range: range.to_string(),
            other_batch: existing.batch_id,
            pipeline: self.pipeline.clone(),
        })
    }

    /// Marks every claimed range of a batch committed; marking twice is harmless.
    pub async fn mark_done(&self, plan: &BatchPlan) -> Result<(), CheckpointError> {
        let marker = DoneMarker {
            batch_id: plan.batch_id,
            committed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        let body = serde_json::to_vec(&marker).expect("markers serialize");
        try_join_all(plan.claimed_ranges().map(|r| {
            let path = self.claim_path(&r.topic_partition(), r.start, "done");
            let body = body.clone();
            async move { self.put_if_absent(&path, body).await }
        }))
        .await
        .map(|_| ())
    }

    /// Every partition the log has entries for.
    pub async fn partitions(&self) -> Result<Vec<TopicPartition>, CheckpointError> {
        let partitions_dir = self.root.clone().join("partitions");
        let mut found = Vec::new();
        for topic in self.subdirectories(&partitions_dir).await? {
            let topic_dir = partitions_dir.clone().join(topic.as_str());
            for partition in self.subdirectories(&topic_dir).await? {
                if let Ok(partition) = partition.parse() {
                    found.push(TopicPartition {
                        topic: topic.clone(),
                        partition,
                    });
                }
            }
        }
        Ok(found)
    }

    async fn subdirectories(&self, dir: &Path) -> Result<Vec<String>, CheckpointError> {
        let listing = match self.store.list_with_delimiter(Some(dir)).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Self::store_error(dir)(e)),
        };
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Deletes all but the latest `keep` entries of each given partition and of the batch
    /// plans, keeping the log small on long-running pipelines. Returns how many it deleted.
    pub async fn purge(
        &self,
        tps: impl Iterator<Item = &TopicPartition>,
        keep: usize,
    ) -> Result<usize, CheckpointError> {
        let mut doomed = Vec::new();
        for dir in tps
            .map(|tp| self.partition_dir(tp))
            .chain([self.root.clone().join("batches")])
        {
            let mut listed = self.list(&dir).await?;
            listed.sort_by(|a, b| a.location.cmp(&b.location));
            let ids: Vec<&str> = listed
                .iter()
                .filter_map(|meta| split_name(meta).filter(|(_, ext)| *ext == "json"))
                .map(|(stem, _)| stem)
                .collect();
            let Some(cutoff) = ids.iter().rev().nth(keep).map(|s| s.to_string()) else {
                continue;
            };
            doomed.extend(
                listed
                    .iter()
                    .filter(|meta| split_name(meta).is_some_and(|(stem, _)| stem <= cutoff.as_str()))
                    .map(|meta| meta.location.clone()),
            );
        }
        let deleted = doomed.len();
        for path in doomed {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::store_error(&path)(e)),
            }
        }
        Ok(deleted)
    }
}

/// The start offset of a claim (`json`) or done marker (`done`) entry.
fn entry_start(meta: &ObjectMeta, extension: &str) -> Option<i64> {
    split_name(meta)
        .filter(|(_, ext)| *ext == extension)
        .and_then(|(stem, _)| stem.parse().ok())
}

/// A log entry's zero-padded id and its extension.
fn split_name(meta: &ObjectMeta) -> Option<(&str, &str)> {
    meta.location.filename()?.split_once('.')
}
