//! Opening a feed from a path or a spec string, choosing the adapter by extension or
//! content: what the command-line tools do with their `<input>` argument.
//!
//! | input | adapter |
//! |---|---|
//! | a directory | [`JournalFeed`] (a tickwire journal) |
//! | `*.dbn`, `*.dbn.zst`, or a file starting with DBN's or zstd's magic | [`DbnFeed`] |
//! | `*.gz`, or a file starting with gzip's magic | [`BinanceFeed`] (recorded streams) |
//! | `*.itch`, `*ITCH50*`, or a file whose first frame is a length-prefixed ITCH 5.0 message | [`ItchFileFeed`] |
//! | `synthetic`, `synthetic:seed=7,instruments=4,events=1000,rate=1000000` | [`SyntheticFeed`] in simulated time |
//!
//! The extension decides, unless the first bytes are another format's magic (a gzip file
//! named `.itch` is an error saying so, not a stream of unknown message types); for unknown
//! extensions the first bytes decide.
//! Errors name the path (or the spec) and say what was expected.
//!
//! ```
//! use tickwire_feeds::open::{FeedSpec, open_feed};
//!
//! let feed = open_feed("synthetic:seed=7,instruments=4,events=1000")?;
//! assert_eq!(feed.instruments().len(), 4);
//! assert!(matches!(FeedSpec::parse("synthetic")?, FeedSpec::Synthetic(_)));
//! let error = open_feed("/no/such/file.gz").err().expect("missing file");
//! assert!(error.to_string().starts_with("/no/such/file.gz: "), "{error}");
//! # Ok::<(), tickwire_feeds::open::OpenError>(())
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tickwire_engine::journal::JournalError;

use crate::binance::{BinanceConfig, BinanceFeed};
use crate::dbn::{DbnConfig, DbnFeed};
use crate::itch::messages::message_len;
use crate::itch::{ItchConfig, ItchFileFeed};
use crate::journal::JournalFeed;
use crate::replay::Schedule;
use crate::synthetic::{SyntheticConfig, SyntheticFeed};
use crate::{Feed, FeedError};

/// Events of a `synthetic` spec without `events=`: a million, so a replay ends.
pub const DEFAULT_SYNTHETIC_EVENTS: u64 = 1_000_000;
/// Simulated events per second of a `synthetic` spec without `rate=` (1 µs apart).
pub const DEFAULT_SYNTHETIC_RATE: u64 = 1_000_000;

/// Why an input could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The path could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The input.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Neither the name nor the content says which adapter reads the file.
    #[error(
        "{}: cannot tell the format: {reason}; expected a Binance recording (.gz), DBN (.dbn, .dbn.zst), ITCH 5.0 (.itch, length-prefixed frames) or a journal directory",
        path.display()
    )]
    UnknownFormat {
        /// The input.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// A `synthetic:...` spec does not parse.
    #[error(
        "bad feed spec `{spec}`: {reason}; expected `synthetic` or `synthetic:seed=N,instruments=N,events=N,rate=N`"
    )]
    BadSpec {
        /// The spec.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The adapter failed to open the file (the error names it).
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The journal failed to open (the error names it).
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// An input, resolved to its adapter but not opened yet.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FeedSpec {
    /// The synthetic generator in simulated time.
    Synthetic(SyntheticConfig),
    /// A Binance recording (gzip lines).
    Binance(PathBuf),
    /// A Databento DBN file, zstd-compressed or not.
    Dbn(PathBuf),
    /// An ITCH 5.0 file of length-prefixed messages.
    Itch(PathBuf),
    /// A tickwire journal directory.
    Journal(PathBuf),
}

/// A file format [`FeedSpec::for_path`] tells by name or by first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Binance,
    Dbn,
    Itch,
}

impl Format {
    /// The format whose magic `head` starts with: gzip's ID1 ID2 (RFC 1952 §2.3.1), DBN's
    /// `DBN` and a version byte, or zstd's frame magic (RFC 8878 §3.1.1). ITCH has none.
    fn of_magic(head: &[u8]) -> Option<Self> {
        match head {
            [0x1f, 0x8b, ..] => Some(Self::Binance),
            [b'D', b'B', b'N', ..] | [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Self::Dbn),
            _ => None,
        }
    }

    /// What a file name ending says.
    fn label(self) -> &'static str {
        match self {
            Self::Binance => "gzip",
            Self::Dbn => "DBN",
            Self::Itch => "ITCH",
        }
    }

    /// Whose magic [`of_magic`](Self::of_magic) found.
    fn magic_label(self) -> &'static str {
        match self {
            Self::Binance => "gzip",
            Self::Dbn => "DBN or zstd",
            Self::Itch => "ITCH",
        }
    }
}

impl FeedSpec {
    /// Resolves `input`: a `synthetic[:...]` spec, or a path (see the module docs).
    pub fn parse(input: &str) -> Result<Self, OpenError> {
        if input == "synthetic" || input.starts_with("synthetic:") {
            return parse_synthetic(input).map(Self::Synthetic);
        }
        Self::for_path(Path::new(input))
    }

    /// Resolves a path by its extension, else its first bytes.
    pub fn for_path(path: &Path) -> Result<Self, OpenError> {
        let io_error = |source| OpenError::Io {
            path: path.to_owned(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(io_error)?;
        let path_buf = path.to_owned();
        if metadata.is_dir() {
            return Ok(Self::Journal(path_buf));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let mut head = [0u8; 16];
        let mut file = File::open(path).map_err(io_error)?;
        let mut n = 0;
        while n < head.len() {
            match file.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        let head = &head[..n];
        let unknown = |reason: String| OpenError::UnknownFormat {
            path: path.to_owned(),
            reason,
        };
        let bytes = |n: usize| format!("{:02x?}", &head[..head.len().min(n)]);
        let named = if name.ends_with(".dbn") || name.ends_with(".dbn.zst") {
            Some(Format::Dbn)
        } else if name.ends_with(".gz") {
            Some(Format::Binance)
        } else if name.ends_with(".itch") || name.contains("itch50") {
            Some(Format::Itch)
        } else {
            None
        };
        let magic = Format::of_magic(head);
        // The extension decides, unless the first bytes are another format's magic.
        let format = match (named, magic) {
            (Some(named), Some(found)) if found != named => {
                return Err(unknown(format!(
                    "the name says {} but the file starts with {}'s magic {}",
                    named.label(),
                    found.magic_label(),
                    bytes(4)
                )));
            }
            // gzip always starts with its magic.
            (Some(Format::Binance), None) if !head.is_empty() => {
                return Err(unknown(format!(
                    "the name says gzip but the file does not start with gzip's magic (1f 8b): {}",
                    bytes(4)
                )));
            }
            (Some(named), _) => named,
            (None, Some(found)) => found,
            (None, None) => match head {
                [] => return Err(unknown("the file is empty".into())),
                [hi, lo, tag, ..]
                    if message_len(*tag) == Some(usize::from(u16::from_be_bytes([*hi, *lo]))) =>
                {
                    Format::Itch
                }
                _ => {
                    return Err(unknown(format!(
                        "unknown extension and first bytes {}",
                        bytes(8)
                    )));
                }
            },
        };
        Ok(match format {
            Format::Binance => Self::Binance(path_buf),
            Format::Dbn => Self::Dbn(path_buf),
            Format::Itch => Self::Itch(path_buf),
        })
    }

    /// A short name of the adapter: `synthetic`, `binance`, `dbn`, `itch`, `journal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Synthetic(_) => "synthetic",
            Self::Binance(_) => "binance",
            Self::Dbn(_) => "dbn",
            Self::Itch(_) => "itch",
            Self::Journal(_) => "journal",
        }
    }

    /// The input's path (none for synthetic).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Synthetic(_) => None,
            Self::Binance(p) | Self::Dbn(p) | Self::Itch(p) | Self::Journal(p) => Some(p),
        }
    }

    /// Which timestamp paces a replay of this input: ITCH files carry no recorded receive
    /// time (the feed stamps the decode time), so they are paced by exchange time.
    pub fn schedule(&self) -> Schedule {
        match self {
            Self::Itch(_) => Schedule::Exchange,
            _ => Schedule::Receive,
        }
    }

    /// Opens the adapter with its default configuration.
    pub fn open(&self) -> Result<Box<dyn Feed>, OpenError> {
        Ok(match self {
            Self::Synthetic(config) => Box::new(SyntheticFeed::new(config.clone())),
            Self::Binance(path) => Box::new(BinanceFeed::open(path, BinanceConfig::default())?),
            Self::Dbn(path) => Box::new(DbnFeed::open(path, DbnConfig::default())?),
            Self::Itch(path) => Box::new(ItchFileFeed::open(path, ItchConfig::default())?),
            Self::Journal(path) => Box::new(JournalFeed::open_to_damage(path)?),
        })
    }
}

impl fmt::Display for FeedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Synthetic(c) => write!(
                f,
                "synthetic:seed={},instruments={},events={},rate={}",
                c.seed,
                c.instruments,
                c.events.unwrap_or(0),
                c.rate
            ),
            other => write!(
                f,
                "{} ({})",
                other
                    .path()
                    .map(Path::display)
                    .map_or_else(String::new, |p| p.to_string()),
                other.kind()
            ),
        }
    }
}

/// Opens `input` (a path or a `synthetic` spec) with the adapter its name or content calls
/// for (see the module docs).
pub fn open_feed(input: &str) -> Result<Box<dyn Feed>, OpenError> {
    FeedSpec::parse(input)?.open()
}

fn parse_synthetic(spec: &str) -> Result<SyntheticConfig, OpenError> {
    let bad = |reason: String| OpenError::BadSpec {
        spec: spec.to_owned(),
        reason,
    };
    let mut config = SyntheticConfig {
        events: Some(DEFAULT_SYNTHETIC_EVENTS),
        rate: DEFAULT_SYNTHETIC_RATE,
        real_time: false,
        ..SyntheticConfig::default()
    };
    let params = spec.strip_prefix("synthetic").unwrap_or(spec);
    let params = params.strip_prefix(':').unwrap_or(params);
    for pair in params.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("`{pair}` is not key=value")))?;
        let number = |what: &str| -> Result<u64, OpenError> {
            value
                .trim()
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| bad(format!("{what} `{value}` is not a whole number")))
        };
        match key.trim() {
            "seed" => config.seed = number("seed")?,
            "instruments" => {
                config.instruments = u32::try_from(number("instruments")?)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(format!("instruments `{value}` must be 1..=2^32-1")))?;
            }
            // 0: never ends.
            "events" => config.events = Some(number("events")?).filter(|&n| n > 0),
            "rate" => {
                config.rate = Some(number("rate")?)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("rate must be above 0".into()))?;
            }
            other => return Err(bad(format!("unknown key `{other}`"))),
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itch::{GeneratorConfig, generate_file};

    fn error_of(input: &str) -> String {
        match FeedSpec::parse(input) {
            Ok(spec) => panic!("{input} resolved to {spec}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn synthetic_specs_parse_with_defaults_and_errors_name_the_spec() {
        let FeedSpec::Synthetic(c) = FeedSpec::parse("synthetic").expect("plain") else {
            panic!("not synthetic");
        };
        assert_eq!(c.events, Some(DEFAULT_SYNTHETIC_EVENTS));
        assert!(!c.real_time);
        let FeedSpec::Synthetic(c) =
            FeedSpec::parse("synthetic:seed=7,instruments=4,events=0,rate=1_000").expect("all")
        else {
            panic!("not synthetic");
        };
        assert_eq!(
            (c.seed, c.instruments, c.events, c.rate),
            (7, 4, None, 1000)
        );
        for (spec, says) in [
            ("synthetic:seed", "not key=value"),
            ("synthetic:seed=x", "seed `x`"),
            ("synthetic:colour=red", "unknown key `colour`"),
            ("synthetic:instruments=0", "instruments"),
        ] {
            let e = error_of(spec);
            assert!(e.contains(spec) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn files_resolve_by_extension_then_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            path.display().to_string()
        };
        let itch = generate_file(&GeneratorConfig {
            messages: 10,
            ..Default::default()
        })
        .expect("generate");
        let kind = |input: &str| FeedSpec::parse(input).map(|s| s.kind());
        assert_eq!(kind(&write("a.itch", b"")).ok(), Some("itch"));
        assert_eq!(kind(&write("day", &itch)).ok(), Some("itch"));
        assert_eq!(kind(&write("x.gz", b"")).ok(), Some("binance"));
        assert_eq!(kind(&write("x", &[0x1f, 0x8b, 8])).ok(), Some("binance"));
        assert_eq!(kind(&write("y.dbn.zst", b"")).ok(), Some("dbn"));
        assert_eq!(kind(&write("y", b"DBN\x02")).ok(), Some("dbn"));
        assert_eq!(
            kind(&dir.path().display().to_string()).ok(),
            Some("journal")
        );
        let odd = write("odd.bin", b"hello world");
        let e = error_of(&odd);
        assert!(
            e.starts_with(&odd) && e.contains("cannot tell the format"),
            "{e}"
        );
        let empty = write("empty.bin", b"");
        assert!(error_of(&empty).contains("empty"));
        // An extension contradicted by another format's magic is an error, not a misread.
        for (name, bytes, says) in [
            (
                "gz.itch",
                &[0x1f, 0x8b, 8, 0][..],
                "the name says ITCH but the file starts with gzip's magic",
            ),
            (
                "zst.itch",
                &[0x28, 0xb5, 0x2f, 0xfd][..],
                "the name says ITCH but the file starts with DBN or zstd's magic",
            ),
            (
                "gz.dbn",
                &[0x1f, 0x8b, 8, 0][..],
                "the name says DBN but the file starts with gzip's magic",
            ),
            (
                "plain.gz",
                &itch[..],
                "the name says gzip but the file does not start with gzip's magic",
            ),
        ] {
            let path = write(name, bytes);
            let e = error_of(&path);
            assert!(e.starts_with(&path) && e.contains(says), "{e}");
        }
        let missing = dir.path().join("missing.gz").display().to_string();
        let e = error_of(&missing);
        assert!(e.starts_with(&missing) && e.contains("No such file"), "{e}");
    }

    #[test]
    fn opened_feeds_name_their_path_in_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = open_feed(&dir.path().display().to_string())
            .err()
            .expect("an empty directory is no journal")
            .to_string();
        assert!(
            e.contains(&dir.path().display().to_string()) && e.contains("no journal segments"),
            "{e}"
        );
        let feed = open_feed("synthetic:instruments=3").expect("synthetic");
        assert_eq!(feed.instruments().len(), 3);
    }
}
