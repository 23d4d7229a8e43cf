//! # eva-hub
//!
//! A real-time WebSocket session hub for live AI-avatar presentations.
//! Renderers (the avatar engine), operators (people at consoles) and
//! participants (the audience) meet in sessions; the hub sequences every
//! session's events into one order and streams each role its view.
//!
//! Read `docs/ARCHITECTURE.md` for the ideas; this map says where they live.
//!
//! | module | job |
//! |---|---|
//! | [`app`] | wiring: settings → backends → hub → listeners; run until a signal, then drain |
//! | [`cli`] | the command line |
//! | [`config`] | layered settings: `config/default.toml`, file, `EVA_HUB__*` env, flags |
//! | [`telemetry`] | logging setup |
//! | [`metrics`] | every Prometheus metric, one place |
//! | [`ids`] | `SessionId`, `TenantId`, `Epoch`, `Seq` and friends |
//! | [`clock`] | the monotonic clock latencies are measured on |
//! | [`protocol`] | wire frames, the two codecs, error and close codes |
//! | [`gateway`] | the public listener: accept loop, WebSocket upgrade, REST, health |
//! | [`connection`] | one socket: outbox, vectored writer, tungstenite reader plumbing |
//! | [`hub`] | the registry of sessions and connections; what every frame does |
//! | [`session`] | one session's replica: the fold of its events, history, subscribers; snapshots to start one on another node |
//! | [`broker`] | trait: sequencing, history, delivery, shared presence (memory) |
//! | [`store`] | trait: durable rows (SQLite, PostgreSQL, memory), the batch writer in front of it, retention |
//! | [`auth`] | trait: credentials → identities (JWT + API keys, dev); abuse limits; origin policy |
//! | [`commands`] | `eva-hub keys` and `eva-hub token`: credentials from the command line |
//! | [`client`] | a Rust client for the protocol, used by tests and load tests |

pub mod app;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod connection;
pub mod gateway;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod protocol;
pub mod session;
pub mod store;
pub mod telemetry;
