//! The `[maintenance]` section: what `tweetlake maintain` and the automatic maintenance in
//! `tweetlake run` do, and how much of a batch's time the latter may take.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::settings::{byte_size, duration_text, InvalidSetting};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// `tweetlake run` maintains the tables between batches.
    pub enabled: bool,
    /// Compaction bin-packs a partition's small files into files of about this size.
    #[serde(with = "byte_size")]
    pub target_file_size: u64,
    /// Per-table target sizes, by dotted table name (`"gold.company_minute" = "32MiB"`).
    #[serde(deserialize_with = "size_map")]
    pub target_file_sizes: BTreeMap<String, u64>,
    /// Automatic compaction of a partition starts when it holds more than this many small
    /// files (files under a sixteenth of the target size).
    pub compact_min_files: usize,
    /// How often automatic maintenance also packs a partition's files into target-size files,
    /// and looks at every table.
    #[serde(with = "duration_text")]
    pub compact_interval: Duration,
    /// How often automatic maintenance vacuums a table, writes a checkpoint and removes
    /// expired log entries.
    #[serde(with = "duration_text")]
    pub vacuum_interval: Duration,
    /// Vacuum removes data files that left the table longer ago than this.
    #[serde(with = "duration_text")]
    pub retention: Duration,
    /// The most time automatic maintenance may take between two batches.
    #[serde(with = "duration_text")]
    pub max_pause: Duration,
    /// How long a maintainer's lease lasts; it is renewed while it works.
    #[serde(with = "duration_text")]
    pub lease_ttl: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            target_file_size: 128 * 1024 * 1024,
            target_file_sizes: BTreeMap::new(),
            compact_min_files: 10,
            compact_interval: Duration::from_secs(3600),
            vacuum_interval: Duration::from_secs(24 * 3600),
            // Delta's own default for delta.deletedFileRetentionDuration.
            retention: Duration::from_secs(7 * 24 * 3600),
            max_pause: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(300),
        }
    }
}

impl MaintenanceConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.target_file_size < 1024 * 1024 {
            return Err(InvalidSetting::new("target_file_size", "must be at least 1MiB"));
        }
        if let Some((table, _)) = self
            .target_file_sizes
            .iter()
            .find(|(_, size)| **size < 1024 * 1024)
        {
            return Err(InvalidSetting::new(
                format!("target_file_sizes.{table}"),
                "must be at least 1MiB",
            ));
        }
        if self.compact_min_files < 2 {
            return Err(InvalidSetting::new("compact_min_files", "must be at least 2"));
        }
        if self.max_pause.is_zero() {
            return Err(InvalidSetting::new("max_pause", "must be above 0"));
        }
        if self.lease_ttl < self.max_pause * 4 {
            return Err(InvalidSetting::new(
                "lease_ttl",
                "must be at least four times maintenance.max_pause, so a lease outlives the steps it covers",
            ));
        }
        Ok(())
    }

    /// The target file size of table `name`.
    pub fn target_for(&self, name: &str) -> u64 {
        self.target_file_sizes
            .get(name)
            .copied()
            .unwrap_or(self.target_file_size)
    }
}

/// A map of sizes written like `target_file_size`.
fn size_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
    #[derive(Deserialize)]
    struct Size(#[serde(with = "byte_size")] u64);
    let map = BTreeMap::<String, Size>::deserialize(d)?;
    Ok(map.into_iter().map(|(table, Size(size))| (table, size)).collect())
}
