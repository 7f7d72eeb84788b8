//! A small parser for the Prometheus text exposition served at `/metrics`.

use std::collections::HashMap;

/// Samples of a Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Metrics {
    /// `(name, labels, value)` for every sample line.
    pub samples: Vec<(String, HashMap<String, String>, f64)>,
    pub raw: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').unwrap_or(line.len());
                    (
                        (&line[..open], &line[open + 1..close]),
                        line.get(close + 1..).unwrap_or(""),
                    )
                }
                None => {
                    let mut it = line.splitn(2, char::is_whitespace);
                    let name = it.next().unwrap_or("");
                    ((name, ""), it.next().unwrap_or(""))
                }
            };
            let value_str = rest.split_whitespace().next().unwrap_or("");
            let value = match value_str {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => match v.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            let labels = parse_labels(series.1);
            samples.push((series.0.trim().to_string(), labels, value));
        }
        Metrics {
            samples,
            raw: text.to_string(),
        }
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    /// The sum of every sample of `name` (over all label sets), or `None` if there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for (n, _, v) in &self.samples {
            if n == name {
                found = true;
                total += v;
            }
        }
        found.then_some(total)
    }

    /// The value of the sample of `name` whose label `key` is `value`, if there is one.
    pub fn labeled(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && l.get(key).map(String::as_str) == Some(value))
            .map(|(_, _, v)| *v)
    }

    /// Like [`Metrics::sum`] but panics with the exposition when the metric is missing.
    pub fn value(&self, name: &str) -> f64 {
        self.sum(name)
            .unwrap_or_else(|| panic!("metric {name} missing from /metrics:\n{}", self.raw))
    }
}

fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(after) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(key, value);
        rest = &after[end..];
    }
    labels
}
