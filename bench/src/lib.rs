//! tickwire's benchmarks: the scenarios themselves, as library code, so that the criterion
//! benchmarks (`benches/`), the harness binaries (`src/bin/`) and the `tickwire bench`
//! command run the same code and print the same tables.
//!
//! * [`ring`]: tickwire's ring against its peers (`disruptor`, `crossbeam-channel`, `rtrb`,
//!   `bus`, `tokio::sync::broadcast`): throughput in the LMAX Disruptor's perf-test
//!   scenarios, and one-way latency at a fixed rate.
//! * [`quic`]: QUIC delivery against a bare quinn stream carrying the same frames.
//! * [`end_to_end`]: the trading pipeline at fixed rates (from scheduled send times) and
//!   flat out.
//! * [`suite`]: all of them and the feeds and journal, as `tickwire bench` runs them, with
//!   the markdown table, the JSON file and the [`plot`]s.
//!
//! Benchmarks are not tests: nothing here asserts a timing; it asserts only that every
//! consumer saw every event, so that a broken scenario cannot report a number.

pub mod end_to_end;
pub mod plot;
pub mod quic;
pub mod ring;
pub mod suite;

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

/// Runs `run` `rounds` times and returns the best wall time and the best thread CPU time,
/// ns: the rounds least disturbed by other processes on a shared machine.
pub fn best_of<T>(rounds: usize, mut run: impl FnMut() -> T) -> (u64, u64) {
    let (mut best_wall, mut best_cpu) = (u64::MAX, u64::MAX);
    for _ in 0..rounds {
        let (wall, cpu) = (std::time::Instant::now(), thread_cpu_ns());
        std::hint::black_box(run());
        best_cpu = best_cpu.min(thread_cpu_ns() - cpu);
        best_wall = best_wall.min(wall.elapsed().as_nanos() as u64);
    }
    (best_wall, best_cpu)
}
