//! prometheus-client writes OpenMetrics; Prometheus and `promtool check metrics`
//! read the classic text format (0.0.4). This converts one into the other.

/// Converts prometheus-client's OpenMetrics output to the classic Prometheus text
/// format (0.0.4), which every Prometheus and `promtool check metrics` read: a
/// counter's HELP and TYPE lines name its `_total` series, there is no `# EOF`,
/// and a series of a family without labels is `name 1`, not `name{} 1`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        let line = renamed.as_deref().unwrap_or(line);
        match line.split_once("{} ") {
            Some((name, value)) if !name.contains(' ') => {
                out.push_str(name);
                out.push(' ');
                out.push_str(value);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_prometheus_text;

    #[test]
    fn counters_are_named_by_their_total_series() {
        let om = "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total{a=\"b\"} 3\n# HELP up Up.\n# TYPE up gauge\nup 1\nbare{} 2.0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{a=\"b\"} 3\n# HELP up Up.\n# TYPE up gauge\nup 1\nbare 2.0\n"
        );
    }
}
