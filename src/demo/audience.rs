//! A session's simulated audience: a few participants who stay joined
//! (they show in presence) and now and then ask a question, sometimes
//! several of them the same one at about the same time (the console's
//! queue counts duplicates).

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::script::{AUDIENCE_NAMES, QUESTIONS};
use super::{Ctx, Ended, Slot, backoff, classify_close};
use crate::client::{Client, ConnectOptions, Incoming};
use crate::protocol::model::Role;
use crate::protocol::{ClientFrame, Codec, ServerFrame};

/// Runs the audience of one session: `ctx.pace.audience` members, and
/// the questions they ask every `question_every_ms` or so.
pub(super) async fn run(ctx: Arc<Ctx>, slot: Arc<Slot>) {
    let size = ctx.pace.audience;
    let mut asks = Vec::with_capacity(size);
    for k in 0..size {
        let (tx, rx) = mpsc::channel(4);
        asks.push(tx);
        tokio::spawn(member(ctx.clone(), slot.clone(), k, rx));
    }
    let every = ctx.pace.question_every_ms;
    if size == 0 || every == 0 {
        return;
    }
    let mut rng = StdRng::from_os_rng();
    loop {
        let wait = Duration::from_millis(every).mul_f64(rng.random_range(0.5..1.5));
        tokio::time::sleep(wait).await;
        let text = QUESTIONS[rng.random_range(0..QUESTIONS.len())];
        // One person asks; sometimes one or two more ask the same.
        let askers = match rng.random_range(0..10) {
            0..5 => 1,
            5..8 => 2,
            _ => 3,
        }
        .min(size);
        let first = rng.random_range(0..size);
        let mut delay = Duration::ZERO;
        for i in 0..askers {
            let k = (first + i) % size;
            let _ = asks[k].try_send((text.to_owned(), delay));
            delay += Duration::from_millis(rng.random_range(250..900));
        }
    }
}

/// One participant: joined for good, asking what the audience task says.
async fn member(
    ctx: Arc<Ctx>,
    slot: Arc<Slot>,
    k: usize,
    mut asks: mpsc::Receiver<(String, Duration)>,
) {
    let name = AUDIENCE_NAMES[k % AUDIENCE_NAMES.len()];
    let subject = format!("audience-{}-{}", slot.index, k + 1);
    let mut rng = StdRng::from_os_rng();
    let prefix = format!("{:08x}", rng.random::<u32>());
    let mut asked = 0u64;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let ended = async {
            let token = ctx.token(Role::Participant, &subject, &slot).await?;
            let mut c =
                Client::connect(ctx.addr(), ConnectOptions::new(Codec::MsgPack, token)).await?;
            c.send(&ClientFrame::Join {
                session: slot.session,
                resume: None,
                takeover: false,
                name: Some(name.to_owned()),
                compact: false,
                echo: true,
                id: None,
            })
            .await?;
            loop {
                tokio::select! {
                    incoming = c.recv() => match incoming? {
                        Incoming::Closed(close) => return Ok::<_, anyhow::Error>(classify_close(close)),
                        Incoming::Frame(ServerFrame::Error { code, message, session: Some(_), id: None, .. }) => {
                            tracing::debug!(session = %slot.session, ?code, message, "demo participant refused");
                        }
                        Incoming::Frame(_) => {}
                    },
                    ask = asks.recv() => {
                        let Some((text, delay)) = ask else { return Ok(Ended::Final("demo ended".into())) };
                        tokio::time::sleep(delay).await;
                        asked += 1;
                        c.send(&ClientFrame::Question {
                            session: slot.session,
                            id: format!("q-{prefix}-{asked}"),
                            text,
                        })
                        .await?;
                    }
                }
            }
        }
        .await;
        match ended {
            Ok(Ended::Final(why)) => {
                tracing::debug!(session = %slot.session, subject, why, "demo participant leaves");
                return;
            }
            Ok(Ended::Dropped(_)) | Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(10) {
            failures = 0;
        }
        failures += 1;
        tokio::time::sleep(backoff(failures)).await;
    }
}
