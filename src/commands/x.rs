//! `produce x` and `produce rules`: the X API v2 filtered stream into Kafka, and its rules.

use anyhow::Context;

use tweetlake::config::Config;
use tweetlake::produce::x::backoff::SystemClock;
use tweetlake::produce::x::publish::{StreamProducer, StreamSettings};
use tweetlake::produce::x::rules::{self, RulePlan, SyncMode};
use tweetlake::produce::x::XApi;
use tweetlake::stdout::stdout;

use super::produce::kafka_publisher;
use super::stop::stop_on_signal;

pub enum RulesAction {
    List,
    DryRun,
    Sync,
}

/// Syncs the rules, then publishes the stream to the configured topic until Ctrl-C or SIGTERM,
/// and flushes.
pub async fn produce_x(config: &Config) -> anyhow::Result<()> {
    let x = &config.x;
    let api = XApi::new(x)?;
    let desired = rules::company_rules(x)?;
    if desired.is_empty() {
        tracing::info!("no [x.companies] in the config: streaming with the app's current rules");
    } else {
        let plan = rules::sync(&api, &desired, SyncMode::Apply).await?;
        tracing::info!("x rules: {}", plan_summary(&plan, SyncMode::Apply));
    }
    let publisher = kafka_publisher(config)?;
    let stopped = stop_on_signal("stopping: flushing what was received")?;
    let settings = StreamSettings {
        idle_timeout: x.idle_timeout,
        report_interval: x.report_interval,
        backfill_minutes: x.backfill_minutes,
    };
    tracing::info!(
        "x stream -> {} on {}",
        config.source.kafka.publish_topic(),
        config.source.kafka.connection.bootstrap_servers
    );
    if x.backfill_minutes > 0 {
        tracing::info!(
            "x stream: asking for {} minutes of backfill on every connection: posts from before a \
             reconnect arrive again (silver keeps one row per post)",
            x.backfill_minutes
        );
    }
    let streamed = StreamProducer::new(&api, &publisher, SystemClock, settings)
        .run(stopped)
        .await;
    // Flushed after a fatal error too: what was received before it is still delivered.
    let flushed = tokio::task::block_in_place(|| publisher.flush());
    let stats = streamed?;
    let delivered = flushed?;
    eprintln!(
        "{} posts and {} malformed lines received, {delivered} delivered to {}; {} connections, {} failed \
         attempts, {} disconnect messages",
        stats.posts,
        stats.malformed,
        config.source.kafka.publish_topic(),
        stats.connections,
        stats.failed_attempts,
        stats.disconnect_messages
    );
    Ok(())
}

/// Lists the app's rules, or syncs them with `[x.companies]` (validating only, for a dry run).
pub async fn rules(config: &Config, action: RulesAction) -> anyhow::Result<()> {
    let api = XApi::new(&config.x)?;
    let mut out = stdout();
    let mode = match action {
        RulesAction::List => {
            let current = rules::list(&api).await?;
            for rule in &current {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    rule.id,
                    rule.tag.as_deref().unwrap_or("-"),
                    rule.value
                )?;
            }
            eprintln!("{} rules", current.len());
            return Ok(());
        }
        RulesAction::DryRun => SyncMode::DryRun,
        RulesAction::Sync => SyncMode::Apply,
    };
    let desired = rules::company_rules(&config.x)?;
    anyhow::ensure!(
        !desired.is_empty(),
        "no companies under [x.companies] in the config: a sync would delete every rule"
    );
    let plan = rules::sync(&api, &desired, mode).await.context(match mode {
        SyncMode::Apply => "sync the rules",
        SyncMode::DryRun => "validate the rules (dry run)",
    })?;
    for (mark, rules) in [("=", &plan.keep), ("-", &plan.delete)] {
        for rule in rules {
            writeln!(
                out,
                "{mark} {}\t{}\t{}",
                rule.id,
                rule.tag.as_deref().unwrap_or("-"),
                rule.value
            )?;
        }
    }
    for spec in &plan.add {
        writeln!(out, "+ \t{}\t{}", spec.tag, spec.value)?;
    }
    let outcome = match mode {
        SyncMode::Apply => "",
        SyncMode::DryRun => " (dry run: X validated the change; nothing changed)",
    };
    eprintln!("rules: {}{outcome}", plan_summary(&plan, mode));
    Ok(())
}

fn plan_summary(plan: &RulePlan, mode: SyncMode) -> String {
    let (keep, add, delete) = (plan.keep.len(), plan.add.len(), plan.delete.len());
    match mode {
        _ if plan.is_empty() => format!("{keep} rules, already in line with [x.companies]"),
        SyncMode::Apply => format!("{keep} kept, {add} added, {delete} deleted"),
        SyncMode::DryRun => format!("{keep} to keep, {add} to add, {delete} to delete"),
    }
}
