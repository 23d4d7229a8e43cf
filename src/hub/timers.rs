//! The hub's one timer task: work that happens "later" (presence grace,
//! the emergency-stop deadline, takeover grace, authentication and token
//! deadlines) is scheduled here, so an idle connection or session costs
//! no timer of its own. `deferred.rs` says what each job does.
//!
//! Timer jobs are checks, not commands: when a job fires it looks at the
//! replica and acts only if the condition it was scheduled for still holds
//! (the participant is still gone, the stop is still unacknowledged...).
//! Rescheduling or cancelling is therefore never needed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ids::{ConnId, EventId, SessionId};

/// A deferred check.
#[derive(Clone, Debug)]
pub(crate) enum Job {
    /// The member's grace ran out: publish `leave` if it is still gone.
    PresenceLeave { session: SessionId, key: String },
    /// Alert if the session is live and still has no renderer.
    RendererGrace { session: SessionId },
    /// Alert if the emergency stop is still unacknowledged.
    EmergencyAckDeadline {
        session: SessionId,
        intervention_id: EventId,
    },
    /// Release the takeover if its operator is still gone.
    TakeoverGrace {
        session: SessionId,
        operator: String,
    },
    /// Finish stopping if the renderer never confirmed.
    StopTimeout { session: SessionId },
    /// Close the connection if it has not authenticated yet.
    AuthDeadline { conn: ConnId },
    /// Close the connection (4002) if its credential has expired.
    TokenExpiry { conn: ConnId },
}

#[derive(Debug)]
pub(crate) struct Timers {
    tx: mpsc::UnboundedSender<(Instant, Job)>,
}

/// What runs a job once it is due (the hub, without being kept alive
/// by its own timer task).
pub(crate) type Runner = Box<dyn Fn(Job) + Send + Sync>;

impl Timers {
    pub(crate) fn start(run: Runner) -> Timers {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_timers(run, rx));
        Timers { tx }
    }

    pub(crate) fn schedule(&self, after: Duration, job: Job) {
        let _ = self.tx.send((Instant::now() + after, job));
    }
}

async fn run_timers(run: Runner, mut rx: mpsc::UnboundedReceiver<(Instant, Job)>) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut jobs: HashMap<u64, Job> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        let next = heap.peek().map(|Reverse((at, _))| *at);
        tokio::select! {
            received = rx.recv() => match received {
                Some((at, job)) => {
                    next_id += 1;
                    heap.push(Reverse((at, next_id)));
                    jobs.insert(next_id, job);
                }
                None => return,
            },
            _ = async { tokio::time::sleep_until(next.expect("guarded")).await }, if next.is_some() => {
                let now = Instant::now();
                while let Some(Reverse((at, id))) = heap.peek().copied() {
                    if at > now {
                        break;
                    }
                    heap.pop();
                    if let Some(job) = jobs.remove(&id) {
                        run(job);
                    }
                }
            }
        }
    }
}
