//! Stopping on Ctrl-C or SIGTERM (what `docker stop`, Kubernetes and systemd send), the same way
//! for every long-running command: the first signal asks the command to finish what it is doing
//! (the batch in progress, the messages sent so far) and exit 0; a second one aborts at once with
//! the shell's status for that signal, 130 for Ctrl-C and 143 for SIGTERM. tokio never gives a
//! signal back its default action once it handles it, so the abort is ours to make.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// Watches for Ctrl-C and SIGTERM from now on; the receiver turns true at the first one, and
/// `then` says in the log what the command does about it (e.g. "stopping after the current
/// batch"). The handlers are in place when this returns: a signal that comes right after is
/// never left to its default action.
pub fn stop_on_signal(then: &'static str) -> anyhow::Result<watch::Receiver<bool>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("handling Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let first = next(&mut interrupt, &mut terminate).await;
        tracing::warn!("{}: {then} ({} again aborts)", first.name(), first.name());
        let _ = stop.send(true);
        let second = next(&mut interrupt, &mut terminate).await;
        tracing::warn!("{}: aborting", second.name());
        std::process::exit(second.abort_status());
    });
    Ok(stopped)
}

#[derive(Debug, Clone, Copy)]
enum Received {
    Interrupt,
    Terminate,
}

impl Received {
    fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "Ctrl-C",
            Self::Terminate => "SIGTERM",
        }
    }

    /// What a shell reports for a process this signal ended: 128 + the signal's number.
    fn abort_status(self) -> i32 {
        match self {
            Self::Interrupt => 128 + libc::SIGINT,
            Self::Terminate => 128 + libc::SIGTERM,
        }
    }
}

async fn next(interrupt: &mut Signal, terminate: &mut Signal) -> Received {
    tokio::select! {
        _ = interrupt.recv() => Received::Interrupt,
        _ = terminate.recv() => Received::Terminate,
    }
}
