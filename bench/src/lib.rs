//! tickwire's benchmarks: the scenarios themselves, as library code, so that the criterion
//! benchmarks (`benches/`), the harness binaries (`src/bin/`) and the `tickwire bench`
//! command run the same code and print the same tables.
//!
//! * [`ring`]: tickwire's ring against its peers (`disruptor`, `crossbeam-channel`, `rtrb`,
//!   `bus`, `tokio::sync::broadcast`): throughput in the LMAX Disruptor's perf-test
//!   scenarios, and one-way latency at a fixed rate.
//!
//! Benchmarks are not tests: nothing here asserts a timing; it asserts only that every
//! consumer saw every event, so that a broken scenario cannot report a number.

pub mod ring;
