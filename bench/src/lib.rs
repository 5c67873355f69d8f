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

/// The calling thread's CPU time, ns: what the throughput harnesses report beside wall
/// time, since on a shared machine CPU time is disturbed far less by other processes.
///
/// # Panics
///
/// If the kernel refuses `CLOCK_THREAD_CPUTIME_ID` (every Linux since 2.6.12 has it).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
