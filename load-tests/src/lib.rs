//! Shared pieces of the eva-hub load generator and benchmarks: latency
//! recording and result reports. Each scenario is a binary in `src/bin/`.

pub mod report;
