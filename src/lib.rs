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
//! | [`commands`] | `eva-hub keys` and `eva-hub token`: credentials from the command line |
//! | [`demo`] | `eva-hub demo` and `serve --demo`: simulated renderers and audiences on the hub's own client |
//! | [`telemetry`] | logging setup |
//! | [`gateway`] | the public listener: accept loop, WebSocket upgrade and read loop, REST, health, the console's pages |
//! | [`hub`] | this node's connections and what each frame does (one module per frame family); REST operations; timers |
//! | [`session`] | sessions on this node: loading, sequencing through the broker, replicas (the fold of their events), fan-out |
//! | [`webhooks`] | outbound webhooks: event names and bodies, Standard Webhooks signing, the address policy, the dispatcher |
//! | [`ingest`] | inbound vendor events: signatures, vendor shapes and speaking names, the canonical event hash |
//! | [`auth`] | credentials → identities (JWT + API keys, dev); abuse limits; origin policy |
//! | [`broker`] | trait: sequencing, history, delivery, shared presence (memory, Redis) |
//! | [`store`] | trait: durable rows (SQLite, PostgreSQL, memory), the batch writer in front of it, retention |
//! | [`connection`] | one socket: outbox, vectored writer, tungstenite reader plumbing |
//! | [`counters`] | trait: counters shared by connections (slots, rates), node-local implementation |
//! | [`stream`] | a sequenced event (`Published`) and who caused it (`Origin`) |
//! | [`identity`] | who is calling once authenticated: `Identity`, `Principal`, `Scope` |
//! | [`metrics`] | every Prometheus metric, one place |
//! | [`client`] | a Rust client for the protocol, used by tests and load tests |
//! | [`protocol`] | wire frames, the two codecs, error and close codes, the JSON Schema |
//! | [`ids`] | `SessionId`, `TenantId`, `Epoch`, `Seq` and friends |
//! | [`clock`] | the monotonic clock latencies are measured on |
//! | [`config`] | layered settings: `config/default.toml`, file, `EVA_HUB__*` env, flags |
//! | [`secret`] | a string that never reaches a log (tokens, keys, passwords) |
//! | [`recent`] | a map that remembers its last n insertions (dedupe windows, recent ingest hashes) |
//! | [`turns`] | per-key turns: tasks on one key take turns (an inbound event while it is applied) |
//!
//! The modules are listed from the top layer down; each imports only
//! modules below it (`docs/ARCHITECTURE.md`, "Layers", checked by
//! `tests/architecture.rs`).

pub mod app;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod connection;
pub mod counters;
pub mod demo;
pub mod gateway;
pub mod hub;
pub mod identity;
pub mod ids;
pub mod ingest;
pub mod metrics;
pub mod protocol;
pub mod recent;
pub mod secret;
pub mod session;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod turns;
pub mod webhooks;
