//! The exposition formats: a metric set rendered as Prometheus text 0.0.4 or OpenMetrics 1.0
//! text, and the choice between them from an `Accept` header. Pure functions over values; the
//! one place that knows how a sample line is spelled.

use std::fmt::Write;

/// The Prometheus text format, which every scraper reads.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// A constant labelled 1 (OpenMetrics `info`; a gauge in the Prometheus format).
    Info,
}

/// One metric family. `name` is the family name: without the `_total` of a counter's samples
/// or the `_info` of an info's (the renderer adds them).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Count(u64),
    Int(i64),
    Float(f64),
    /// Finite upper bounds; per-bucket (not cumulative) counts, one more than the bounds (the
    /// last is above every bound); the sum of the observed values.
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
    },
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: Value) {
        self.samples.push(Sample { labels, value });
    }
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_TEXT,
            Format::OpenMetrics => OPENMETRICS_TEXT,
        }
    }

    /// The format a scraper asked for: OpenMetrics when an `Accept` media range for it (version
    /// 1.0.0 or 0.0.1, or none given) has a higher quality than any range the Prometheus text
    /// format matches (`text/plain` at version 0.0.4 or none, `text/*`, `*/*`); the Prometheus
    /// format otherwise, including without a header or when nothing offered is known.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let (mut q, mut version) = (1.0f32, None);
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.parse().unwrap_or(0.0),
                    "version" => version = Some(v.to_string()),
                    _ => {}
                }
            }
            let q = q.clamp(0.0, 1.0);
            let version = version.as_deref();
            match media.as_str() {
                "application/openmetrics-text"
                    if matches!(version, None | Some("1.0.0") | Some("0.0.1")) =>
                {
                    om = om.max(q)
                }
                "text/plain" if matches!(version, None | Some("0.0.4")) => text = text.max(q),
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om > text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// Renders a metric set. Families appear in the order given, each with its HELP and TYPE
/// lines (OpenMetrics: TYPE first, and `# EOF` at the end).
pub fn render(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(families.len() * 256);
    for f in families {
        family(&mut out, f, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn family(out: &mut String, f: &Family, format: Format) {
    let om = format == Format::OpenMetrics;
    // The name sample lines use for a counter or an info; also the Prometheus format's name
    // for the family, which has no separate family name.
    let sample_name = match f.kind {
        Kind::Counter => format!("{}_total", f.name),
        Kind::Info => format!("{}_info", f.name),
        Kind::Gauge | Kind::Histogram => f.name.to_string(),
    };
    let type_name = match (f.kind, om) {
        (Kind::Counter, _) => "counter",
        (Kind::Gauge, _) | (Kind::Info, false) => "gauge",
        (Kind::Histogram, _) => "histogram",
        (Kind::Info, true) => "info",
    };
    if om {
        let _ = writeln!(out, "# TYPE {} {type_name}", f.name);
        let _ = writeln!(out, "# HELP {} {}", f.name, escape(f.help, true));
    } else {
        let _ = writeln!(out, "# HELP {sample_name} {}", escape(f.help, false));
        let _ = writeln!(out, "# TYPE {sample_name} {type_name}");
    }
    for s in &f.samples {
        match &s.value {
            Value::Histogram {
                bounds,
                counts,
                sum,
            } => {
                let mut cumulative = 0u64;
                for (i, c) in counts.iter().enumerate() {
                    cumulative += c;
                    let le = bounds.get(i).map_or("+Inf".to_string(), |b| le(*b, om));
                    out.push_str(f.name);
                    out.push_str("_bucket");
                    labels(out, &s.labels, Some(&le));
                    let _ = writeln!(out, " {cumulative}");
                }
                let _ = write!(out, "{}_sum", f.name);
                labels(out, &s.labels, None);
                let _ = writeln!(out, " {}", float(*sum));
                let _ = write!(out, "{}_count", f.name);
                labels(out, &s.labels, None);
                let _ = writeln!(out, " {cumulative}");
            }
            v => {
                out.push_str(&sample_name);
                labels(out, &s.labels, None);
                let _ = match v {
                    Value::Count(n) => writeln!(out, " {n}"),
                    Value::Int(n) => writeln!(out, " {n}"),
                    Value::Float(x) => writeln!(out, " {}", float(*x)),
                    Value::Histogram { .. } => Ok(()),
                };
            }
        }
    }
}

fn labels(out: &mut String, labels: &[(&'static str, String)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let all = labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(le.map(|le| ("le", le)));
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(&escape(v, true));
        out.push('"');
    }
    out.push('}');
}

/// Backslash and line feed are escaped everywhere; the double quote in label values (and, in
/// OpenMetrics, in HELP too).
fn escape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: shortest round-trip decimal, `+Inf`/`-Inf`/`NaN` spelled as both formats
/// want.
fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x}")
    }
}

/// An `le` label value, spelled as Go's `%g` does (the Prometheus client libraries' rendering,
/// so series keep their label values whoever exposes them), with `.0` added for OpenMetrics'
/// canonical form (`1.0`, `0.005`, `1e-05`).
fn le(x: f64, om: bool) -> String {
    let a = x.abs();
    let mut s = if a != 0.0 && !(1e-4..1e21).contains(&a) {
        // Go prints at least two exponent digits and always a sign: 1e-05, 1e+21.
        let e = format!("{x:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        format!("{x}")
    };
    if om && !s.contains(['.', 'e']) {
        s.push_str(".0");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_set() -> Vec<Family> {
        let mut accepted = Family::new("demo_accepted", Kind::Counter, "Connections accepted.");
        accepted.push(vec![("worker", "0".into())], Value::Count(3));
        accepted.push(vec![("worker", "1".into())], Value::Count(0));
        let mut open = Family::new("demo_open", Kind::Gauge, "Open now.");
        open.push(vec![], Value::Int(-2));
        let mut build = Family::new("demo_build", Kind::Info, "Build.");
        build.push(vec![("version", "1.2.3".into())], Value::Count(1));
        let mut hist = Family::new("demo_seconds", Kind::Histogram, "Time.");
        hist.push(
            vec![("worker", "0".into())],
            Value::Histogram {
                bounds: vec![0.0005, 1.0, 2.5],
                counts: vec![2, 0, 3, 1],
                sum: 9.25,
            },
        );
        vec![accepted, open, build, hist]
    }

    #[test]
    fn prometheus_text_golden() {
        let expected = "\
# HELP demo_accepted_total Connections accepted.
# TYPE demo_accepted_total counter
demo_accepted_total{worker=\"0\"} 3
demo_accepted_total{worker=\"1\"} 0
# HELP demo_open Open now.
# TYPE demo_open gauge
demo_open -2
# HELP demo_build_info Build.
# TYPE demo_build_info gauge
demo_build_info{version=\"1.2.3\"} 1
# HELP demo_seconds Time.
# TYPE demo_seconds histogram
demo_seconds_bucket{worker=\"0\",le=\"0.0005\"} 2
demo_seconds_bucket{worker=\"0\",le=\"1\"} 2
demo_seconds_bucket{worker=\"0\",le=\"2.5\"} 5
demo_seconds_bucket{worker=\"0\",le=\"+Inf\"} 6
demo_seconds_sum{worker=\"0\"} 9.25
demo_seconds_count{worker=\"0\"} 6
";
        assert_eq!(render(&sample_set(), Format::Prometheus), expected);
    }

    #[test]
    fn openmetrics_golden() {
        let expected = "\
# TYPE demo_accepted counter
# HELP demo_accepted Connections accepted.
demo_accepted_total{worker=\"0\"} 3
demo_accepted_total{worker=\"1\"} 0
# TYPE demo_open gauge
# HELP demo_open Open now.
demo_open -2
# TYPE demo_build info
# HELP demo_build Build.
demo_build_info{version=\"1.2.3\"} 1
# TYPE demo_seconds histogram
# HELP demo_seconds Time.
demo_seconds_bucket{worker=\"0\",le=\"0.0005\"} 2
demo_seconds_bucket{worker=\"0\",le=\"1.0\"} 2
demo_seconds_bucket{worker=\"0\",le=\"2.5\"} 5
demo_seconds_bucket{worker=\"0\",le=\"+Inf\"} 6
demo_seconds_sum{worker=\"0\"} 9.25
demo_seconds_count{worker=\"0\"} 6
# EOF
";
        assert_eq!(render(&sample_set(), Format::OpenMetrics), expected);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut f = Family::new("x", Kind::Gauge, "a \\ b \"q\"\nnext");
        f.push(
            vec![("names", "a\"b\\c\nd".into()), ("k", "plain".into())],
            Value::Float(0.5),
        );
        let text = render(std::slice::from_ref(&f), Format::Prometheus);
        assert!(text.contains("# HELP x a \\\\ b \"q\"\\nnext\n"), "{text}");
        assert!(
            text.contains("x{names=\"a\\\"b\\\\c\\nd\",k=\"plain\"} 0.5\n"),
            "{text}"
        );
        let om = render(std::slice::from_ref(&f), Format::OpenMetrics);
        assert!(om.contains("# HELP x a \\\\ b \\\"q\\\"\\nnext\n"), "{om}");
        assert_eq!(om.lines().filter(|l| l.starts_with('#')).count(), 3);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let mut f = Family::new("h", Kind::Histogram, "h");
        f.push(
            vec![],
            Value::Histogram {
                bounds: vec![0.1, 0.2],
                counts: vec![0, 0, 4],
                sum: 1.0,
            },
        );
        let text = render(&[f], Format::Prometheus);
        let values: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(values, ["0", "0", "4", "1", "4"]);
    }

    #[test]
    fn le_values_follow_go_and_the_openmetrics_canonical_form() {
        let cases = [
            (0.0005, "0.0005", "0.0005"),
            (0.0001, "0.0001", "0.0001"),
            (0.00001, "1e-05", "1e-05"),
            (1.0, "1", "1.0"),
            (60.0, "60", "60.0"),
            (2.5, "2.5", "2.5"),
            (1e21, "1e+21", "1e+21"),
            (0.0, "0", "0.0"),
        ];
        for (x, text, om) in cases {
            assert_eq!(le(x, false), text, "{x}");
            assert_eq!(le(x, true), om, "{x}");
        }
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(1.5e9), "1500000000");
    }

    #[test]
    fn negotiation() {
        use Format::*;
        let prometheus_2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let cases = [
            (None, Prometheus),
            (Some(""), Prometheus),
            (Some("*/*"), Prometheus),
            (Some("text/plain"), Prometheus),
            (Some(prometheus_2), OpenMetrics),
            (Some("application/openmetrics-text"), OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; Version=\"1.0.0\""),
                OpenMetrics,
            ),
            (
                Some("application/openmetrics-text; version=2.0.0"),
                Prometheus,
            ),
            (
                Some("text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"),
                Prometheus,
            ),
            (Some("application/openmetrics-text;q=0"), Prometheus),
            (
                Some("application/openmetrics-text;q=0.2, */*;q=0.1"),
                OpenMetrics,
            ),
            (Some("application/json"), Prometheus),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
        assert_eq!(OpenMetrics.content_type(), OPENMETRICS_TEXT);
    }
}
