//! `eva-hub demo`: live presentations without an avatar engine.
//!
//! For each of N sessions a simulated renderer, built on the hub's own
//! client ([`crate::client`]), presents: slides advance, speech starts and
//! stops, a transcript flows (`transcript` app events), stage latencies
//! are reported as metrics, questions are answered after a short
//! "thinking" delay, operator commands are carried out, and an emergency
//! stop is acknowledged at once. A small simulated audience stays joined
//! and now and then asks a question. Under a takeover the hub holds the
//! renderer's own answers for the operator to approve, as it would a real
//! renderer's.
//!
//! The demo finds its sessions over REST (those it created before and
//! that have not ended, marked with `config.eva_demo`) and creates the
//! missing ones, so a restarted demo, or a hub restarted with `--demo`,
//! carries on with the same sessions. Against a `--dev` hub it needs no
//! credentials; otherwise an API key (`eva:read`, `eva:write`) with which
//! it creates sessions and mints its tokens.
//!
//! | file | owns |
//! |---|---|
//! | `http.rs` | the REST calls |
//! | `script.rs` | names, slides, sentences, questions, answers, the latency model |
//! | `renderer.rs` | a simulated renderer |
//! | `audience.rs` | a session's simulated participants |

mod audience;
mod http;
mod renderer;
mod script;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use self::http::Rest;
use crate::cli::DemoPace;
use crate::ids::SessionId;
use crate::protocol::model::Role;

/// What `eva-hub demo` (or `serve --demo`) runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The hub: `ws://host:port` or `http://host:port` (a path is ignored).
    pub url: String,
    pub sessions: usize,
    /// An API key for a hub outside `--dev`; none: development tokens.
    pub api_key: Option<String>,
    /// Development renderer tokens are `<prefix>-<n>`.
    pub token_prefix: String,
    pub pace: DemoPace,
}

/// How a connection of the demo ended.
#[derive(Debug)]
enum Ended {
    /// Not worth reconnecting: the session ended, credentials refused, or
    /// the renderer was replaced.
    Final(String),
    /// Reconnect after a backoff.
    Dropped(String),
}

/// One demo session.
#[derive(Debug)]
struct Slot {
    /// 1-based, stored in the session's `config.eva_demo`.
    index: usize,
    session: SessionId,
    name: String,
}

/// What every task of the demo shares.
#[derive(Debug)]
struct Ctx {
    rest: Rest,
    token_prefix: String,
    pace: DemoPace,
}

impl Ctx {
    fn addr(&self) -> SocketAddr {
        self.rest.addr
    }

    fn renderer_subject(&self, slot: &Slot) -> String {
        format!("demo-{}", slot.index)
    }

    /// A connection token: a development claim, or one minted over REST
    /// with the API key (for this session only, an hour long).
    async fn token(&self, role: Role, subject: &str, slot: &Slot) -> anyhow::Result<String> {
        if self.rest.api_key.is_none() {
            return Ok(match role {
                Role::Renderer => format!("{}-{}", self.token_prefix, slot.index),
                _ => format!("dev:{}:{subject}", role.as_str()),
            });
        }
        let minted = self
            .rest
            .call(
                "/v1/tokens",
                Some(&json!({
                    "role": role.as_str(),
                    "subject": subject,
                    "sessions": [slot.session],
                    "ttl_s": 3600,
                })),
            )
            .await?;
        minted
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("POST /v1/tokens answered without a token")
    }
}

/// Reconnect delay after `failures` failures in a row: 250 ms doubling to
/// 5 s, with jitter.
fn backoff(failures: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << failures.min(5)).min(5000);
    Duration::from_millis(base / 2 + rand::random_range(0..=base / 2))
}

/// Close codes after which a demo connection does not come back: the
/// session ended (4505), the renderer was replaced (4504), credentials
/// were refused (4501 to 4503) or the socket was closed normally.
fn classify_close(close: Option<(u16, String)>) -> Ended {
    match close {
        Some((code @ (1000 | 4501..=4505), reason)) => {
            Ended::Final(format!("closed with {code}: {reason}"))
        }
        Some((code, reason)) => Ended::Dropped(format!("closed with {code}: {reason}")),
        None => Ended::Dropped("connection lost".into()),
    }
}

/// `ws://host:port/...` → the address to connect to and the `host:port`
/// for HTTP's `Host` header.
async fn target(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = if let Some(r) = url.strip_prefix("ws://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("wss://") || url.starts_with("https://") {
        bail!(
            "{url}: the demo speaks plain ws:// only; run it next to the hub (e.g. ws://127.0.0.1:8080)"
        );
    } else {
        bail!("{url}: give the hub as ws://host:port");
    };
    let authority = rest.split('/').next().unwrap_or_default().to_owned();
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(&with_port)
        .await
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    Ok((addr, authority))
}

/// The demo's sessions: those an earlier run created that are still live,
/// then new ones up to `count`.
async fn sessions(rest: &Rest, count: usize) -> anyhow::Result<Vec<Slot>> {
    let listed = rest
        .call("/v1/sessions?limit=500", None)
        .await
        .context("cannot list the hub's sessions")?;
    let mut found: Vec<Option<(SessionId, String)>> = vec![None; count];
    for s in listed
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let live = !matches!(
            s.get("status").and_then(Value::as_str),
            Some("stopped" | "failed")
        );
        let index = s.pointer("/config/eva_demo").and_then(Value::as_u64);
        let id = s
            .get("id")
            .and_then(Value::as_str)
            .and_then(|i| i.parse().ok());
        if let (true, Some(i), Some(id)) = (live, index, id)
            && (1..=count as u64).contains(&i)
            && found[i as usize - 1].is_none()
        {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            found[i as usize - 1] = Some((id, name.to_owned()));
        }
    }
    let mut slots = Vec::with_capacity(count);
    for (i, f) in found.into_iter().enumerate() {
        let index = i + 1;
        let (session, name) = match f {
            Some(existing) => existing,
            None => {
                let name = script::session_name(index);
                let created = rest
                    .call(
                        "/v1/sessions",
                        Some(&json!({
                            "name": name,
                            "description": "A simulated presentation (eva-hub demo)",
                            "config": {"eva_demo": index},
                        })),
                    )
                    .await
                    .context("cannot create a demo session")?;
                let id = created
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|i| i.parse().ok())
                    .context("POST /v1/sessions answered without an id")?;
                (id, name)
            }
        };
        slots.push(Slot {
            index,
            session,
            name,
        });
    }
    Ok(slots)
}

/// Runs the demo until every simulated renderer has stopped (their
/// sessions ended), or forever.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let (addr, authority) = target(&opts.url).await?;
    let rest = Rest {
        addr,
        authority: authority.clone(),
        api_key: opts.api_key.clone(),
    };
    let slots = sessions(&rest, opts.sessions).await?;
    let ctx = Arc::new(Ctx {
        rest,
        token_prefix: opts.token_prefix.clone(),
        pace: opts.pace.clone(),
    });
    let mut renderers = Vec::with_capacity(slots.len());
    for slot in slots {
        tracing::info!(
            session = %slot.session,
            name = slot.name,
            participant_page = format!("http://{authority}/s/{}", slot.session),
            "demo session"
        );
        let slot = Arc::new(slot);
        renderers.push(tokio::spawn(renderer::run(ctx.clone(), slot.clone())));
        tokio::spawn(audience::run(ctx.clone(), slot));
    }
    tracing::info!(
        sessions = renderers.len(),
        console = format!("http://{authority}/console/"),
        "demo running"
    );
    for r in renderers {
        let _ = r.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_are_ws_or_http_urls() {
        let (addr, authority) = target("ws://127.0.0.1:8080/v1/ws").await.unwrap();
        assert_eq!(addr.port(), 8080);
        assert_eq!(authority, "127.0.0.1:8080");
        assert_eq!(target("http://127.0.0.1:9").await.unwrap().1, "127.0.0.1:9");
        assert!(target("wss://hub.example.com").await.is_err());
        assert!(target("127.0.0.1:8080").await.is_err());
    }

    #[test]
    fn final_closes() {
        assert!(matches!(
            classify_close(Some((4505, String::new()))),
            Ended::Final(_)
        ));
        assert!(matches!(
            classify_close(Some((1012, String::new()))),
            Ended::Dropped(_)
        ));
        assert!(matches!(classify_close(None), Ended::Dropped(_)));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) <= Duration::from_millis(500));
        for f in 1..20 {
            assert!(backoff(f) <= Duration::from_millis(5000));
        }
    }
}
