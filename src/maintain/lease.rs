//! One maintainer at a time: a lease in the lake's `_tweetlake` area, so two instances of a
//! pipeline (or a pipeline and `tweetlake maintain`) never compact one table at once: two
//! concurrent optimizes of the same files would both commit, and every row would be there twice.
//!
//! The lease is a chain of entries `_tweetlake/<pipeline>/maintenance/lease/<seq>.json`, each
//! written with put-if-absent (the same conditional put the offset log relies on; a local
//! filesystem has no compare-and-swap of an existing object). The newest entry says who holds
//! the lease until when; taking, renewing or releasing it writes the next entry, and whoever
//! writes it first wins.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use chrono::{DateTime, Utc};
use deltalake::logstore::object_store::{self, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use deltalake::{ObjectStore, Path};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::MaintainError;

/// Entries are zero-padded so that names sort in numeric order.
const SEQ_WIDTH: usize = 20;
/// Entries kept behind the newest one.
const KEEP_ENTRIES: u64 = 16;
/// Clocks of two machines may differ: an entry counts as expired this much later.
const CLOCK_SKEW: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    owner: String,
    /// Milliseconds since the epoch; 0 for a released lease.
    expires_at_ms: i64,
}

/// Who holds the lease, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub owner: String,
    pub until: DateTime<Utc>,
}

pub struct Lease {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    owner: String,
    /// The sequence number of the entry this owner wrote last, while it holds the lease.
    held: Option<u64>,
}

impl Lease {
    /// The maintenance lease of `pipeline` under the lake root `lake_root`, taken as `owner`.
    pub fn new(store: Arc<dyn ObjectStore>, lake_root: &Path, pipeline: &str, owner: String) -> Self {
        let dir = lake_root
            .clone()
            .join("_tweetlake")
            .join(pipeline)
            .join("maintenance")
            .join("lease");
        Self {
            store,
            dir,
            owner,
            held: None,
        }
    }

    /// Takes the lease for `ttl`, or extends it. `Err(holder)` inside `Ok` when another owner
    /// holds an unexpired lease or wrote the next entry first.
    pub async fn acquire(&mut self, ttl: Duration) -> Result<Result<(), Holder>, MaintainError> {
        let now = Utc::now().timestamp_millis();
        let next = match self.latest().await? {
            Some((_, entry)) if entry.owner != self.owner && live(&entry, now) => {
                self.held = None;
                return Ok(Err(holder(&entry)));
            }
            Some((seq, _)) => seq + 1,
            None => 0,
        };
        let expires_at_ms = now + ttl.as_millis() as i64;
        match self.write(next, expires_at_ms).await? {
            Written::Won => {
                self.held = Some(next);
                self.purge(next).await;
                Ok(Ok(()))
            }
            Written::Lost => {
                self.held = None;
                let holder = self.latest().await?.map_or_else(
                    || Holder {
                        owner: "another maintainer".into(),
                        until: Utc::now(),
                    },
                    |(_, entry)| holder(&entry),
                );
                Ok(Err(holder))
            }
        }
    }

    /// Gives the lease up at once, so another maintainer need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), MaintainError> {
        if let Some(seq) = self.held.take() {
            // Losing this race means someone else already wrote the next entry: fine either way.
            self.write(seq + 1, 0).await?;
        }
        Ok(())
    }

    fn entry_path(&self, seq: u64) -> Path {
        self.dir.clone().join(format!("{seq:0SEQ_WIDTH$}.json").as_str())
    }

    async fn sequence_numbers(&self) -> Result<Vec<u64>, MaintainError> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|source| self.store_error(source))?;
        Ok(listed
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect())
    }

    async fn latest(&self) -> Result<Option<(u64, Entry)>, MaintainError> {
        let Some(seq) = self.sequence_numbers().await?.into_iter().max() else {
            return Ok(None);
        };
        let path = self.entry_path(seq);
        let read = async { self.store.get(&path).await?.bytes().await };
        let bytes = read.await.map_err(|source| self.store_error(source))?;
        let entry = serde_json::from_slice(&bytes).map_err(|source| MaintainError::CorruptLease {
            path: path.to_string(),
            source,
        })?;
        Ok(Some((seq, entry)))
    }

    async fn write(&self, seq: u64, expires_at_ms: i64) -> Result<Written, MaintainError> {
        let entry = Entry {
            owner: self.owner.clone(),
            expires_at_ms,
        };
        let body = serde_json::to_vec(&entry).expect("a lease entry serializes");
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.entry_path(seq), PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(Written::Won),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(Written::Lost)
            }
            Err(source) => Err(self.store_error(source)),
        }
    }

    /// Deletes entries well behind `newest`; a failure only leaves a few small files behind.
    async fn purge(&self, newest: u64) {
        let Some(below) = newest.checked_sub(KEEP_ENTRIES) else {
            return;
        };
        let Ok(old) = self.sequence_numbers().await else {
            return;
        };
        for seq in old.into_iter().filter(|&seq| seq < below) {
            if let Err(error) = self.store.delete(&self.entry_path(seq)).await {
                tracing::debug!("maintenance lease: deleting entry {seq}: {error}");
            }
        }
    }

    fn store_error(&self, source: object_store::Error) -> MaintainError {
        MaintainError::Store {
            path: self.dir.to_string(),
            source,
        }
    }
}

/// A lease kept while a long piece of work runs (`tweetlake maintain`): renewed every third of
/// its time to live by a background task, given up by [`Self::release`].
pub struct HeldLease {
    lease: Arc<Mutex<Lease>>,
    renewal: JoinHandle<()>,
}

impl HeldLease {
    /// Takes `lease` for `ttl` and keeps it; `Err(holder)` inside `Ok` when another holds it.
    pub async fn take(mut lease: Lease, ttl: Duration) -> Result<Result<Self, Holder>, MaintainError> {
        if let Err(holder) = lease.acquire(ttl).await? {
            return Ok(Err(holder));
        }
        let lease = Arc::new(Mutex::new(lease));
        let renewed = Arc::clone(&lease);
        let renewal = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match renewed.lock().await.acquire(ttl).await {
                    Ok(Ok(())) => {}
                    // Only possible after this process stalled past the whole TTL.
                    Ok(Err(holder)) => tracing::error!(
                        "maintenance lease lost to {} (this process stalled longer than maintenance.lease_ttl)",
                        holder.owner
                    ),
                    Err(error) => tracing::warn!("renewing the maintenance lease: {error}"),
                }
            }
        });
        Ok(Ok(Self { lease, renewal }))
    }

    pub async fn release(self) -> Result<(), MaintainError> {
        self.renewal.abort();
        self.lease.lock().await.release().await
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

enum Written {
    Won,
    Lost,
}

fn live(entry: &Entry, now_ms: i64) -> bool {
    entry.expires_at_ms + CLOCK_SKEW.as_millis() as i64 > now_ms
}

fn holder(entry: &Entry) -> Holder {
    Holder {
        owner: entry.owner.clone(),
        until: DateTime::from_timestamp_millis(entry.expires_at_ms).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::logstore::object_store::memory::InMemory;

    fn lease(store: &Arc<dyn ObjectStore>, owner: &str) -> Lease {
        Lease::new(store.clone(), &Path::default(), "p", owner.into())
    }

    #[tokio::test]
    async fn one_owner_at_a_time_until_release() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (mut a, mut b) = (lease(&store, "a"), lease(&store, "b"));
        let ttl = Duration::from_secs(60);
        assert!(a.acquire(ttl).await.unwrap().is_ok());
        let held = b.acquire(ttl).await.unwrap().unwrap_err();
        assert_eq!(held.owner, "a");
        assert!(held.until > Utc::now() + chrono::Duration::seconds(50));
        assert!(a.acquire(ttl).await.unwrap().is_ok(), "the holder renews");
        a.release().await.unwrap();
        assert!(b.acquire(ttl).await.unwrap().is_ok(), "a released lease is free");
        assert!(a.acquire(ttl).await.unwrap().is_err());
    }

    #[tokio::test]
    async fn an_expired_lease_can_be_taken_and_old_entries_are_purged() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let (mut a, mut b) = (lease(&store, "a"), lease(&store, "b"));
        assert!(a.acquire(Duration::ZERO).await.unwrap().is_ok());
        // Zero TTL: expired once the clock-skew margin has passed; a past entry shows that.
        a.write(1, 0).await.unwrap();
        assert!(b.acquire(Duration::from_secs(60)).await.unwrap().is_ok());
        for _ in 0..40 {
            assert!(b.acquire(Duration::from_secs(60)).await.unwrap().is_ok());
        }
        let kept = b.sequence_numbers().await.unwrap();
        assert!(kept.len() <= KEEP_ENTRIES as usize + 1, "{kept:?}");
    }
}
