//! The `tickwire` binary for end-to-end tests: built once from the current sources, run
//! with a timeout, or started as a long-running child.
//!
//! `CARGO_BIN_EXE_tickwire` exists only for the binary's own package, so the binary is
//! found next to this test's: `<target>/<profile>/tickwire`, this executable being
//! `<target>/<profile>/deps/<test>-<hash>`. Before the first use it is (re)built with
//! `cargo build -p tickwire` into that same target directory and profile (a no-op when it
//! is up to date). Every child runs under a timeout and is killed if it overruns.

#![allow(dead_code)] // each test file uses its own part of this module

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A child that runs longer is killed and the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// Building the binary may compile its dependencies first on a fresh clone (two cores).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// What a finished child did.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `command` to its end, killing it after `timeout`.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> Output {
    let what = format!("{command:?}");
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!("{what} ran over {timeout:?} and was killed; stderr:\n{err}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        success: status.success(),
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// The `tickwire` binary of the current sources, built on first use.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let deps = exe.parent().expect("deps directory");
        let profile_dir = deps.parent().expect("profile directory");
        let target_dir = profile_dir.parent().expect("target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile directory name");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .arg("build")
            .arg("--quiet")
            .arg("-p")
            .arg("tickwire")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir);
        // `debug` is the dev profile's directory; any other is named after its profile.
        if profile != "debug" {
            build.arg("--profile").arg(profile);
        }
        let out = run_with_timeout(build, BUILD_TIMEOUT);
        assert!(
            out.success,
            "cargo build -p tickwire failed:\n{}",
            out.stderr
        );
        let binary = profile_dir.join(format!("tickwire{}", std::env::consts::EXE_SUFFIX));
        assert!(
            binary.exists(),
            "{} missing after the build",
            binary.display()
        );
        binary
    })
}

/// Runs `tickwire args` to its end in a scratch working directory (removed after), so
/// that default output paths (`tickwire-replay/`, `tickwire-data/`) never land in the
/// source tree.
pub fn tickwire(args: &[&str]) -> Output {
    let scratch = tempfile::tempdir().expect("scratch working directory");
    let mut command = Command::new(binary());
    command.args(args).current_dir(scratch.path());
    run_with_timeout(command, TIMEOUT)
}

/// A long-running `tickwire` child (the service): its stdout lines arrive on a channel,
/// stderr is collected; it is killed if dropped while running.
pub struct ServiceChild {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line read so far.
    pub stdout: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
    /// The working directory, removed when the child is dropped.
    _scratch: tempfile::TempDir,
}

impl ServiceChild {
    /// Starts `tickwire args`.
    pub fn start(args: &[&str]) -> Self {
        let scratch = tempfile::tempdir().expect("scratch working directory");
        let mut command = Command::new(binary());
        command.args(args).current_dir(scratch.path());
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(read_all(child.stderr.take().expect("piped stderr")));
        Self {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
            _scratch: scratch,
        }
    }

    /// Reads stdout until a line contains `needle` (returns it), failing after `timeout`
    /// or if the child ends first.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                    panic!(
                        "no stdout line with {needle:?} ({e:?}); stdout so far:\n{}\nstderr:\n{}",
                        self.stdout.join("\n"),
                        stderr.unwrap_or_default()
                    );
                }
            }
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our own child,
        // not yet reaped (we hold its `Child`).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for the child to exit (killing it after `timeout`): its output.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                break status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!(
                    "tickwire did not exit within {timeout:?} and was killed; stdout:\n{}\nstderr:\n{}",
                    self.stdout.join("\n"),
                    stderr.unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        Output {
            success: status.success(),
            code: status.code(),
            stdout: self.stdout.join("\n"),
            stderr: self
                .stderr
                .take()
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default(),
        }
    }
}

impl Drop for ServiceChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
