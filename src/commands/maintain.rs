//! `tweetlake maintain`: compaction, vacuum, checkpoints and expired-log cleanup of the lake's
//! tables, and pruning of the offset log, on demand.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use tweetlake::config::Config;
use tweetlake::decode::bronze_schema;
use tweetlake::maintain::{
    Execution, HeldLease, Lease, MaintainError, RetentionCheck, TableMaintenance, TableReport, TableTarget,
};
use tweetlake::pipeline::checkpoint::OffsetLog;
use tweetlake::settings::human_bytes;
use tweetlake::stdout::stdout;

use super::{load_config, load_models};

/// What `tweetlake maintain` was asked to do.
pub struct MaintainRequest {
    /// One table, or every table of the lake.
    pub table: Option<String>,
    /// Overrides `maintenance.retention`.
    pub retention: Option<Duration>,
    pub retention_check: RetentionCheck,
    pub execution: Execution,
}

pub async fn maintain(config_path: Option<&Path>, request: MaintainRequest) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let lake = config.lake.open()?;
    let targets = targets(&config, &lake, request.table.as_deref()).await?;
    let retention = request.retention.unwrap_or(config.maintenance.retention);
    let jobs: Vec<TableMaintenance> = targets
        .into_iter()
        .map(|target| {
            TableMaintenance::new(&lake, target, retention)
                .with_retention_check(request.retention_check)
                .with_execution(request.execution)
        })
        .collect();
    // Every table is checked before any is changed: a refused retention changes nothing.
    for job in &jobs {
        job.check().await?;
    }
    let (store, root) = lake.object_store()?;
    let lease = Lease::new(store.clone(), &root, &config.pipeline.name, lease_owner());
    let held = match request.execution {
        Execution::Apply => Some(take_lease(lease, config.maintenance.lease_ttl).await?),
        Execution::DryRun => None,
    };
    let started = Instant::now();
    let mut reports = Vec::new();
    for job in jobs {
        let report = job.execute().await?;
        writeln!(stdout(), "{report}")?;
        reports.push(report);
    }
    if let Some(held) = held {
        let log = OffsetLog::new(store, &root, &config.pipeline.name);
        let partitions = log.partitions().await?;
        let pruned = log
            .purge(partitions.iter(), config.pipeline.log_retention_batches)
            .await?;
        writeln!(
            stdout(),
            "offset log of pipeline `{}`: {pruned} entries past the latest {} per partition pruned",
            config.pipeline.name,
            config.pipeline.log_retention_batches
        )?;
        held.release().await?;
    }
    writeln!(stdout(), "{}", summary(&reports, started.elapsed()))?;
    Ok(())
}

/// The tables to maintain: the one asked for, or every table of the lake, with the z-order
/// columns of their models.
async fn targets(
    config: &Config,
    lake: &tweetlake::lake::Lake,
    only: Option<&str>,
) -> anyhow::Result<Vec<TableTarget>> {
    let names = lake.table_names().await?;
    if let Some(name) = only.filter(|name| !names.iter().any(|n| n == name)) {
        return Err(MaintainError::UnknownTable {
            name: name.to_string(),
            known: names.join(", "),
        }
        .into());
    }
    let models = load_models(config).context("reading the models for their @zorder directives")?;
    // Planning type-checks every model, `@zorder` columns included: a bad one changes nothing.
    models.plan(bronze_schema()).await?;
    let declared = config.maintenance_targets(&models);
    Ok(names
        .into_iter()
        .filter(|name| only.is_none_or(|only| only == name))
        .map(|name| {
            declared
                .iter()
                .find(|target| target.name == name)
                .cloned()
                .unwrap_or_else(|| TableTarget {
                    target_file_size: config.maintenance.target_for(&name),
                    name,
                    zorder: Vec::new(),
                })
        })
        .collect())
}

async fn take_lease(lease: Lease, ttl: Duration) -> Result<HeldLease, MaintainError> {
    HeldLease::take(lease, ttl)
        .await?
        .map_err(|holder| MaintainError::LeaseHeld { holder })
}

fn lease_owner() -> String {
    format!("maintain@{}", tweetlake::maintain::lease_owner())
}

fn summary(reports: &[TableReport], elapsed: Duration) -> String {
    let files = |f: fn(&TableReport) -> usize| reports.iter().map(f).sum::<usize>();
    let bytes = |f: fn(&TableReport) -> u64| reports.iter().map(f).sum::<u64>();
    let verb = match reports.first().map(|r| r.execution) {
        Some(Execution::DryRun) => "would maintain",
        _ => "maintained",
    };
    format!(
        "{verb} {} tables: {} -> {} files, {} -> {} in {:.1} s",
        reports.len(),
        files(|r| r.before.files),
        files(|r| r.after.files),
        human_bytes(bytes(|r| r.before.bytes)),
        human_bytes(bytes(|r| r.after.bytes)),
        elapsed.as_secs_f64()
    )
}
