//! Minimal `parse` for developing formats without building the daemon:
//! `cargo run -p alf-formats --example parse -- parse --format cloudfront FILE`
//! (same arguments as `aws-log-forwarder parse`, plain text input only).
use std::io::{BufReader, Write};

use alf_formats::{
    Enricher, Event, EventSink, Format, ObjectInfo, ParseOptions, Redactor, Stop, parse_object,
};

struct Print(Vec<u8>, Redactor);
impl EventSink for Print {
    fn emit(&mut self, e: Event) -> Result<(), Stop> {
        e.write_json(&mut self.0, Some(&self.1));
        self.0.push(b'\n');
        Ok(())
    }
    fn malformed(&mut self, line: u64, reason: &str) {
        eprintln!("line {line}: {reason}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "parse").collect();
    let mut format = None;
    let mut path = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--format" {
            format = it.next().and_then(|f| f.parse::<Format>().ok());
        } else {
            path = Some(a.clone());
        }
    }
    let (Some(path), Some(format)) = (path, format) else {
        eprintln!("usage: parse --format NAME FILE");
        std::process::exit(2);
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let obj = ObjectInfo {
        bucket: String::new(),
        key: path.clone(),
        version: String::new(),
    };
    let mut sink = Print(Vec::new(), Redactor::new());
    let res = parse_object(
        format,
        &mut BufReader::new(file),
        &obj,
        &ParseOptions::default(),
        &Enricher::new(),
        &mut sink,
    );
    let _ = std::io::stdout().write_all(&sink.0);
    if let Err(e) = res {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    }
}
