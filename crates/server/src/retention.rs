//! Retention: with `[privacy] retention_days`, calls that ended longer ago
//! than that (their transcripts, alerts, claims and scorecards) and older
//! audit rows are purged from the store — at start, then every [`EVERY`].
//! The purge runs on a blocking thread; the runtime only waits for it.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Shared;
use callwatch_core::time::now_unix_ms;

/// Time between purges.
pub const EVERY: Duration = Duration::from_secs(3600);

const DAY_MS: i64 = 86_400_000;

/// Purges until the server shuts down.
pub async fn run(shared: Arc<Shared>, retention_days: u32) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let cutoff = now_unix_ms() - i64::from(retention_days) * DAY_MS;
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.purge_before(cutoff)).await {
            Ok(Ok(purged)) => {
                tracing::info!(
                    calls = purged.calls,
                    audit_events = purged.audit_events,
                    retention_days,
                    "store purged"
                )
            }
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "the retention purge failed; retrying later"),
            Err(_) => tracing::error!("the retention purge panicked; retrying later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
