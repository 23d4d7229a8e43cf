//! Retention: a background task that deletes performance metrics older
//! than `store.metrics_retention_days` (seed 000: 90 days), every
//! `store.retention_interval_s`.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Store;

/// Starts the task; it runs once right away, then every `every`. A
/// `keep_days` of 0 keeps metrics forever (no task is started).
pub fn spawn(store: Arc<dyn Store>, keep_days: u32, every: Duration) -> Option<JoinHandle<()>> {
    if keep_days == 0 {
        return None;
    }
    let keep = chrono::Duration::days(i64::from(keep_days));
    let every = every.max(Duration::from_secs(1));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cutoff = chrono::Utc::now() - keep;
            match store.delete_metrics_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => {
                    crate::metrics::store_metrics_expired(n);
                    tracing::info!(rows = n, %cutoff, "deleted expired performance metrics");
                }
                // The next run tries again; nothing is lost by waiting.
                Err(e) => tracing::warn!(error = %e, "metric retention failed"),
            }
        }
    }))
}
