//! Security tests: production credentials against real clients over TCP.
//! Refused credentials, tenant isolation (property tests), the origin
//! policy, every abuse limit, token expiry, audit rows, key storage, the
//! start-up refusal, and scans of the logs and the store for secrets.
#![allow(unreachable_pub, dead_code)]

#[path = "../hub/support.rs"]
mod hub_support;
mod support;

mod audit;
mod binary;
mod expiry;
mod handshake;
mod isolation;
mod keys;
mod limits;
mod logs;
mod origin;
mod redaction;
mod roles;
