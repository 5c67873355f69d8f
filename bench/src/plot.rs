//! Plots of benchmark and replay results, as SVG and PNG (with `plotters`), and the
//! HdrHistogram interval log.
//!
//! * [`percentile_plot`]: latency by percentile in the HdrHistogram style. The x axis is
//!   `log10(1 / (1 - p))`, so 90%, 99%, 99.9%, 99.99% ... are evenly spaced and the tail
//!   gets as much room as the body; the y axis is latency on a log scale; one line per
//!   named histogram (a hop, an implementation).
//! * [`throughput_bars`]: events per second per implementation, one bar each.
//! * [`write_interval_log`]: the histograms in the standard HdrHistogram interval log
//!   format (V2 compressed, base64), one tagged interval per histogram, readable by
//!   `HistogramLogProcessor` and the hdrhistogram crates.
//!
//! **Text needs a font.** PNG (and SVG layout) text is rendered from a TrueType file loaded
//! at runtime ([`font`]): `$TICKWIRE_FONT`, else DejaVu Sans from the usual system paths
//! (Debian's `fonts-dejavu-core`). No fontconfig is needed. Without a font the plots are
//! still written, with their lines but no text, and [`Plotted::note`] says so
//! (`TICKWIRE_FONT=none` forces that, to check it).
//!
//! ```no_run
//! use tickwire_bench::plot::{percentile_plot, write_interval_log};
//! use tickwire_engine::latency::new_histogram;
//!
//! let mut audit = new_histogram();
//! for ns in [800, 900, 1_200, 40_000] {
//!     audit.record(ns).expect("in range");
//! }
//! let series = [("receive->audit", &audit)];
//! let plotted = percentile_plot("/tmp/latency".as_ref(), "replay latency", &series)?;
//! println!("{} {}", plotted.svg.display(), plotted.png.display());
//! write_interval_log("/tmp/latency.hlog".as_ref(), &series)?;
//! # Ok::<(), tickwire_bench::plot::PlotError>(())
//! ```

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use tickwire_engine::latency::format_ns;

/// Why a plot or log could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Drawing or encoding the image failed.
    #[error("{path}: drawing the plot: {message}")]
    Draw {
        /// The file being written.
        path: String,
        /// What the backend said.
        message: String,
    },
    /// A file could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A histogram could not be serialised into the interval log.
    #[error("{path}: histogram `{series}`: {message}")]
    Log {
        /// The log file.
        path: String,
        /// The series (tag).
        series: String,
        /// What the serialiser said.
        message: String,
    },
}

/// The files a plot function wrote.
#[derive(Debug, Clone)]
pub struct Plotted {
    /// The SVG file.
    pub svg: PathBuf,
    /// The PNG file.
    pub png: PathBuf,
    /// Set when the plot has no text (no font was found), with why.
    pub note: Option<String>,
}

/// Where [`font`] looks, in order, after `$TICKWIRE_FONT`.
pub const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

/// The family name the plots ask for; [`font`] registers the loaded file under it.
const FAMILY: &str = "sans-serif";

/// Loads and registers the plots' font once per process: `Ok(path)` of the file in use, or
/// `Err(why)` when none could be loaded (plots are then drawn without text).
pub fn font() -> Result<&'static Path, &'static str> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let loaded = FONT.get_or_init(|| {
        if std::env::var_os("TICKWIRE_FONT").is_some_and(|v| v == "none") {
            return Err("TICKWIRE_FONT=none: plots written without text".to_owned());
        }
        let candidates: Vec<PathBuf> = std::env::var_os("TICKWIRE_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .collect();
        for path in &candidates {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // Leaked once per process: plotters keeps registered fonts for the process's
            // lifetime and wants `'static` bytes.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                return Ok(path.clone());
            }
        }
        Err(format!(
            "no usable font (tried $TICKWIRE_FONT and {}; install fonts-dejavu-core): plots \
             written without text",
            FONT_PATHS.join(", ")
        ))
    });
    match loaded {
        Ok(path) => Ok(path.as_path()),
        Err(why) => Err(why.as_str()),
    }
}

/// Line colours, in series order (Tableau 10, readable on white).
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Plot size, pixels (PNG) and user units (SVG).
const SIZE: (u32, u32) = (1000, 620);

fn draw_error(path: &Path, error: impl std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

fn parent_dir(path: &Path) -> Result<(), PlotError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Draws with `draw` into `<stem>.svg` and `<stem>.png`.
fn both(
    stem: &Path,
    draw: impl Fn(&DrawingArea<SVGBackend<'_>, Shift>, bool) -> Result<(), String>,
    draw_png: impl Fn(&DrawingArea<BitMapBackend<'_>, Shift>, bool) -> Result<(), String>,
) -> Result<Plotted, PlotError> {
    parent_dir(stem)?;
    let (text, note) = match font() {
        Ok(_) => (true, None),
        Err(why) => (false, Some(why.to_owned())),
    };
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, text).map_err(|e| draw_error(&svg, e))?;
        root.present().map_err(|e| draw_error(&svg, e))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw_png(&root, text).map_err(|e| draw_error(&png, e))?;
        root.present().map_err(|e| draw_error(&png, e))?;
    }
    Ok(Plotted { svg, png, note })
}

/// `log10(1 / (1 - q))`: the x coordinate of quantile `q` (0 at the median's left end).
fn nines(q: f64) -> f64 {
    (1.0 / (1.0 - q).max(1e-12)).log10()
}

/// The label of x coordinate `x`: the percentile it stands for (`90%`, `99.9%`).
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    if p >= 99.0 {
        let decimals = (x.round() as usize).saturating_sub(2);
        format!("{p:.decimals$}%")
    } else {
        format!("{p:.0}%")
    }
}

/// The curve of one histogram: (x = nines of the percentile, y = latency ns), and the x of
/// its maximum (the nines of `1 - 1/count`).
fn curve(h: &Histogram<u64>) -> (Vec<(f64, f64)>, f64) {
    let count = h.len().max(1);
    let x_max = nines(1.0 - 1.0 / count as f64).max(1.0);
    let mut points: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 { x_max } else { nines(q).min(x_max) };
            (x, h.highest_equivalent(v.value_iterated_to()).max(1) as f64)
        })
        .collect();
    if points.is_empty() {
        points.push((0.0, 1.0));
    }
    (points, x_max)
}

fn percentile_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: bool,
    title: &str,
    series: &[(&str, &Histogram<u64>)],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let curves: Vec<(Vec<(f64, f64)>, f64)> = series.iter().map(|(_, h)| curve(h)).collect();
    let x_max = curves.iter().map(|c| c.1).fold(1.0, f64::max).ceil();
    let (lo, hi) = curves
        .iter()
        .flat_map(|c| c.0.iter().map(|p| p.1))
        .fold((f64::MAX, 1.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (y_lo, y_hi) = ((lo.min(hi) / 1.5).max(1.0), hi * 1.5);
    let mut builder = ChartBuilder::on(root);
    // The right margin leaves room for the last percentile label, centred on the edge.
    builder.margin(16).margin_right(48);
    if text {
        builder
            .caption(title, (FAMILY, 22))
            .x_label_area_size(48)
            .y_label_area_size(80);
    } else {
        builder.x_label_area_size(8).y_label_area_size(8);
    }
    let mut chart = builder
        .build_cartesian_2d(0f64..x_max, (y_lo..y_hi).log_scale())
        .map_err(|e| e.to_string())?;
    // Without a font, no mesh at all: its labels need one (and plotters 0.3.7 loops
    // forever on a segmented axis asked for zero labels).
    if text {
        chart
            .configure_mesh()
            .x_labels(x_max as usize + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format_ns(*y as u64))
            .x_desc("percentile")
            .y_desc("latency")
            .label_style((FAMILY, 15))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    for (i, ((name, _), (points, _))) in series.iter().zip(curves).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let drawn = chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        if text {
            drawn.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
        }
    }
    if text && !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 15))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png`: latency by percentile, one line per histogram
/// (see the module docs for the axes). Empty histograms draw a flat line at 1 ns.
pub fn percentile_plot(
    stem: &Path,
    title: &str,
    series: &[(&str, &Histogram<u64>)],
) -> Result<Plotted, PlotError> {
    both(
        stem,
        |root, text| percentile_chart(root, text, title, series),
        |root, text| percentile_chart(root, text, title, series),
    )
}

fn bar_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: bool,
    title: &str,
    unit: &str,
    bars: &[(String, f64)],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let top = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.15;
    let n = bars.len().max(1) as u32;
    let mut builder = ChartBuilder::on(root);
    builder.margin(16);
    if text {
        builder
            .caption(title, (FAMILY, 22))
            .x_label_area_size(40)
            .y_label_area_size(340);
    } else {
        builder.x_label_area_size(8).y_label_area_size(8);
    }
    // Horizontal bars: y = bar index (top to bottom), x = value.
    let mut chart = builder
        .build_cartesian_2d(0f64..top, (0u32..n).into_segmented())
        .map_err(|e| e.to_string())?;
    if text {
        let mut mesh = chart.configure_mesh();
        mesh.disable_y_mesh();
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let label = move |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => (n - 1)
                .checked_sub(*i)
                .and_then(|row| names.get(row as usize))
                .cloned()
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        mesh.y_labels(bars.len())
            .y_label_formatter(&label)
            .x_desc(unit)
            .label_style((FAMILY, 14))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    for (i, (name, value)) in bars.iter().enumerate() {
        let row = n - 1 - i as u32;
        let colour = if name.starts_with("tickwire") {
            COLOURS[0]
        } else {
            COLOURS[7]
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row)),
                    (*value, SegmentValue::Exact(row + 1)),
                ],
                colour.mix(0.85).filled(),
            )))
            .map_err(|e| e.to_string())?;
        if text {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" {value:.2}"),
                    (*value, SegmentValue::CenterOf(row)),
                    (FAMILY, 13).into_font(),
                )))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png`: one horizontal bar per `(label, value)`, top to
/// bottom in order; labels starting with `tickwire` are drawn in blue, peers in grey.
pub fn throughput_bars(
    stem: &Path,
    title: &str,
    unit: &str,
    bars: &[(String, f64)],
) -> Result<Plotted, PlotError> {
    both(
        stem,
        |root, text| bar_chart(root, text, title, unit, bars),
        |root, text| bar_chart(root, text, title, unit, bars),
    )
}

/// Writes `histograms` to `path` in the HdrHistogram interval log format: a header (start
/// time, base time), then one interval per histogram, tagged with its name (characters the
/// format reserves, `,` ` ` `\r` `\n`, become `_`), covering the whole run.
pub fn write_interval_log(
    path: &Path,
    histograms: &[(&str, &Histogram<u64>)],
) -> Result<(), PlotError> {
    parent_dir(path)?;
    let io = |source| PlotError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::create(path).map_err(io)?;
    let mut out = BufWriter::new(file);
    let now = SystemTime::now();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("tickwire latency per series, ns (one interval per series: the whole run)")
        .with_start_time(now)
        .with_base_time(now)
        .with_max_value_divisor(1.0)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(io)?;
    for (name, histogram) in histograms {
        let tag: String = name
            .chars()
            .map(|c| {
                if matches!(c, ',' | ' ' | '\r' | '\n') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let log_error = |message: String| PlotError::Log {
            path: path.display().to_string(),
            series: (*name).to_owned(),
            message,
        };
        let tag = Tag::new(&tag).ok_or_else(|| log_error("not a valid tag".into()))?;
        writer
            .write_histogram(
                histogram,
                std::time::Duration::ZERO,
                std::time::Duration::ZERO,
                Some(tag),
            )
            .map_err(|e| log_error(format!("{e:?}")))?;
    }
    drop(writer);
    std::io::Write::flush(&mut out).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use tickwire_engine::latency::new_histogram;

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            h.record(500 + i % 700 + if i % 1000 == 0 { 50_000 } else { 0 })
                .expect("in range");
        }
        h
    }

    #[test]
    fn percentile_labels_name_the_nines() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    #[test]
    fn curve_ends_at_the_maximum() {
        let h = sample();
        let (points, x_max) = curve(&h);
        let last = points.last().expect("points");
        assert_eq!(last.0, x_max);
        assert_eq!(last.1 as u64, h.highest_equivalent(h.max()));
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
    }

    #[test]
    fn without_a_font_both_charts_still_draw_their_data() {
        let h = sample();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            percentile_chart(&root, false, "no text", &[("a", &h)]).expect("drawn");
            root.present().expect("presented");
        }
        assert!(svg.contains("<polyline"), "no line drawn");
        assert!(!svg.contains("<text"), "text drawn without a font");
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            let bars = [("tickwire".to_owned(), 3.0), ("peer".to_owned(), 1.0)];
            bar_chart(&root, false, "no text", "M/s", &bars).expect("drawn");
            root.present().expect("presented");
        }
        assert!(svg.matches("<rect").count() >= 3, "bars missing: {svg}");
    }

    #[test]
    fn plots_and_log_are_written_and_the_log_reads_back() {
        let dir = std::env::temp_dir().join(format!("tickwire-plot-test-{}", std::process::id()));
        let (a, b) = (sample(), new_histogram());
        let series = [("receive->audit", &a), ("empty hop, with spaces", &b)];
        let plotted = percentile_plot(&dir.join("latency"), "test", &series).expect("plot");
        for file in [&plotted.svg, &plotted.png] {
            let len = std::fs::metadata(file).expect("written").len();
            assert!(len > 1000, "{} has {len} bytes", file.display());
        }
        let png = std::fs::read(&plotted.png).expect("png");
        assert_eq!(&png[1..4], b"PNG");
        let bars = [("tickwire".to_owned(), 10.0), ("peer".to_owned(), 4.0)];
        let plotted =
            throughput_bars(&dir.join("bars"), "test", "M events/s", &bars).expect("bars");
        assert!(std::fs::metadata(&plotted.png).expect("written").len() > 1000);

        let log = dir.join("latency.hlog");
        write_interval_log(&log, &series).expect("log");
        let text = std::fs::read(&log).expect("log");
        let mut tags = Vec::new();
        for entry in IntervalLogIterator::new(&text) {
            if let LogEntry::Interval(h) = entry.expect("parses") {
                tags.push(h.tag().map(|t| t.as_str().to_owned()));
            }
        }
        assert_eq!(
            tags,
            [
                Some("receive->audit".to_owned()),
                Some("empty_hop__with_spaces".to_owned())
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
