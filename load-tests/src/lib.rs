//! The eva-hub load generator and benchmarks.
//!
//! | module | job |
//! |---|---|
//! | [`engine`] | open-loop publishers and accounting subscribers for fan-out scenarios |
//! | [`floor`] | the least a server must do to deliver the same events: the scenarios' floor |
//! | [`cluster`] | two nodes on one Redis: same-node and cross-node fan-out |
//! | [`idle`] | memory per idle connection |
//! | [`storm`] | a reconnect storm with resume |
//! | [`drill`] | participants that ask until acknowledged; stored questions audited against acks |
//! | [`servers`] | a private PostgreSQL and redis-server a drill can kill |
//! | [`accounting`] | delivered / lost / duplicated / reordered per subscriber |
//! | [`scan`] | reading probes out of frames without decoding them |
//! | [`cpucap`] | holding a server to a fraction of a core (a cgroup CPU quota) |
//! | [`hubproc`] | the hub under test: spawned and pinned, CPU and RSS from `/proc` |
//! | [`report`] | histograms and the JSON, Markdown and SVG every run writes |

pub mod accounting;
pub mod cluster;
pub mod cpucap;
pub mod drill;
pub mod engine;
pub mod floor;
pub mod hubproc;
pub mod idle;
pub mod report;
pub mod scan;
pub mod servers;
pub mod storm;
