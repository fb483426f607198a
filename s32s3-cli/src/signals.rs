//! Ctrl-C and SIGTERM cancel the run gracefully: in-flight uploads finish or abort, a checkpoint is written
//! and the lease released. A second signal exits at once.

use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGINT or SIGTERM.
pub fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                tracing::warn!(
                    "stopping: finishing in-flight work and writing a checkpoint (signal again to exit at once)"
                );
                child.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}
