//! Integration tests: the real server on a random port, real clients over
//! TCP, both codecs.
#![allow(unreachable_pub, dead_code)]

mod support;

mod directory;
mod ingest;
mod interventions;
mod jobs;
mod lifecycle;
mod malformed;
mod metrics;
mod ordering;
mod presence;
mod qa;
mod resends;
mod resume;
mod roles;
mod shutdown;
mod slow_consumer;
mod webhooks;
