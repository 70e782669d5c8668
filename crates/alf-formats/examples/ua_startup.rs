//! Start-up cost of the user-agent rules, old and new, in one process each:
//! `ua_startup eager` (ua-parser's Extractor, every regex compiled up front) or
//! `ua_startup lazy` (alf_formats::user_agent), then the first and the next agents.
//! Prints CPU time (getrusage) and peak RSS (VmHWM). See crates/alf-bench/README.md.

use std::time::Instant;

static UAP: &str = include_str!("../data/uap-regexes.json");

const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3.1 Mobile/15E148 Safari/604.1",
    "aws-cli/2.15.19 Python/3.11.6 Linux/6.1.72-96.166.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/s3.cp",
];

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn report(step: &str, since: Instant) {
    println!(
        "{step:<24} {:>8.2} ms  peak RSS {:>6} KB",
        since.elapsed().as_secs_f64() * 1e3,
        peak_rss_kb()
    );
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "lazy".into());
    report("process start", Instant::now());
    match mode.as_str() {
        "eager" => {
            let t = Instant::now();
            let regexes: ua_parser::Regexes<'static> =
                serde_json::from_str(UAP).expect("the embedded rules");
            let extractor = ua_parser::Extractor::try_from(regexes).expect("the rules compile");
            report("eager: load + compile", t);
            for (i, ua) in AGENTS.iter().enumerate() {
                let t = Instant::now();
                std::hint::black_box(extractor.extract(ua));
                report(&format!("eager: agent {i}"), t);
            }
        }
        _ => {
            let t = Instant::now();
            let rules = alf_formats::user_agent::UserAgentRules::get().expect("the rules");
            report("lazy: load + prefilter", t);
            for (i, ua) in AGENTS.iter().enumerate() {
                let t = Instant::now();
                std::hint::black_box(rules.extract(ua));
                report(&format!("lazy: agent {i}"), t);
            }
        }
    }
}
