//! What a table occupies in the store: its data files, found by listing the table's directory
//! (the log, `_delta_log`, is not counted). Compaction and vacuum are judged by this.

use std::collections::BTreeMap;

use deltalake::Path;
use futures::TryStreamExt;

use super::MaintainError;
use crate::lake::{Lake, LakeError};
use crate::settings::human_bytes;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    pub files: usize,
    pub bytes: u64,
    /// Each data file's size, by its path relative to the table's directory.
    sizes: BTreeMap<String, u64>,
}

impl Usage {
    /// Lists table `name`'s data files.
    pub async fn of(lake: &Lake, name: &str) -> Result<Self, MaintainError> {
        let (store, root) = lake.object_store()?;
        let dir = name.split('.').fold(root, |dir, part| dir.join(part));
        let listed: Vec<_> =
            store
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|source| LakeError::Listing {
                    path: dir.to_string(),
                    source,
                })?;
        let sizes: BTreeMap<String, u64> = listed
            .into_iter()
            .filter_map(|meta| {
                let relative = relative_to(&dir, &meta.location)?;
                // Delta's rule: `_delta_log`, `_change_data` and dot files are not data; a
                // partition directory (`_ingest_date=...`) is, whatever its first character.
                let first = relative.split('/').next().unwrap_or_default();
                let hidden = first.starts_with(['_', '.']) && !first.contains('=');
                (!hidden && relative.ends_with(".parquet")).then_some((relative, meta.size))
            })
            .collect();
        Ok(Self::from_sizes(sizes))
    }

    fn from_sizes(sizes: BTreeMap<String, u64>) -> Self {
        Self {
            files: sizes.len(),
            bytes: sizes.values().sum(),
            sizes,
        }
    }

    /// The usage left once the files at `removed` (relative to the table) are gone.
    pub fn without(&self, removed: &[String]) -> Self {
        let mut sizes = self.sizes.clone();
        for path in removed {
            sizes.remove(path.trim_start_matches('/'));
        }
        Self::from_sizes(sizes)
    }

    pub fn size(&self) -> String {
        human_bytes(self.bytes)
    }
}

fn relative_to(dir: &Path, location: &Path) -> Option<String> {
    let parts: Vec<String> = location
        .prefix_match(dir)?
        .map(|p| p.as_ref().to_string())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}
