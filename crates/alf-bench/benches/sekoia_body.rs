//! The escaping of a Sekoia.io request body: the intake client wraps every event's
//! JSON text in a JSON string (`{"intake_key": ..., "jsons": ["{\"...", ...]}`), so
//! every quote of every event (about 80 in a CloudFront event of 1.8 KB) is escaped.
//! Sekoia.io is the default protocol, so this runs on every event the daemon sends.
//!
//! * `byte-walk`: the intake client's loop until this bench was added (a `match` per
//!   byte, copying the runs between escapes), kept here as the reference;
//! * `words`: `alf_formats::write_json_string`, which the client uses now (eight bytes
//!   at a time to the next byte to escape, clean bytes written by whole words).
//!
//! One batch's worth of events: 5,000 CloudFront events (`batch.max_events`'s default).
//! `ALF_BENCH_SEKOIA_RECORDS` changes it.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use alf_bench::{BenchObject, CloudFrontInput, Kind, bench_group, env_count, gunzip_reader};
use alf_formats::{Enricher, Event, EventSink, Redactor, Stop};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps every event's JSON text, as a batch holds them.
struct Events {
    redactor: Redactor,
    texts: Vec<Vec<u8>>,
}

impl EventSink for Events {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        let mut text = Vec::with_capacity(2048);
        event.write_json(&mut text, Some(&self.redactor));
        self.texts.push(text);
        Ok(())
    }
}

/// The intake client's loop before `words` (the reference).
fn byte_walk(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&s[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

fn body(events: &[Vec<u8>], out: &mut Vec<u8>, escape: fn(&mut Vec<u8>, &[u8])) -> usize {
    out.clear();
    out.extend_from_slice(b"{\"intake_key\":\"k\",\"jsons\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        escape(out, event);
    }
    out.extend_from_slice(b"]}");
    out.len()
}

fn sekoia_body(c: &mut Criterion) {
    let records = env_count("ALF_BENCH_SEKOIA_RECORDS", 5_000);
    let gz = CloudFrontInput::gz_announced(records, "");
    let mut events = Events {
        redactor: Redactor::new(),
        texts: Vec::new(),
    };
    let stats = BenchObject::new(Kind::CloudFront).parse(
        &Enricher::new(),
        &mut gunzip_reader(&gz),
        &mut events,
    );
    assert!(stats.is_ok(), "the generated object parses");
    let events = events.texts;
    let bytes: usize = events.iter().map(Vec::len).sum();

    // The same body either way: events' JSON text holds no raw control byte, the only
    // bytes the two escape differently.
    let (mut walked, mut worded) = (Vec::new(), Vec::new());
    body(&events, &mut walked, byte_walk);
    body(&events, &mut worded, alf_formats::write_json_string);
    assert!(walked == worded, "both loops write the same body");

    let mut group = bench_group(c, "sekoia-body", Duration::from_secs(5));
    group.throughput(Throughput::Bytes(bytes as u64));
    let mut out = Vec::with_capacity(worded.len());
    group.bench_function("byte-walk", |b| {
        b.iter(|| black_box(body(&events, &mut out, byte_walk)))
    });
    group.bench_function("words", |b| {
        b.iter(|| black_box(body(&events, &mut out, alf_formats::write_json_string)))
    });
    group.finish();
}

criterion_group!(benches, sekoia_body);
criterion_main!(benches);
