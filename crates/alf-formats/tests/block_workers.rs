//! The workers of a block-parallel parse are threads that outlive the object. Alone in
//! its test binary: other tests taking the pool's idle threads would change which
//! threads the next object gets.

use std::collections::HashSet;
use std::thread::ThreadId;
use std::time::Duration;

use alf_formats::driver::{EventSink, Stop};
use alf_formats::parallel::{BlockPlan, parse_object_blocks_into};
use alf_formats::{Event, Format, ObjectInfo, ParseOptions};

/// Notes which thread filled it.
struct ThreadOfBlock {
    thread: ThreadId,
    events: u64,
}

impl EventSink for ThreadOfBlock {
    fn emit(&mut self, _event: Event) -> Result<(), Stop> {
        self.events += 1;
        Ok(())
    }

    fn malformed(&mut self, _line: u64, _reason: &str) {}
}

/// The threads that parsed the blocks of one object, and its events.
fn worker_threads_of_one_object() -> (HashSet<ThreadId>, u64) {
    let text: String = (0..2_000)
        .map(|i| format!("line {i} of the object\n"))
        .collect();
    let (mut threads, mut events) = (HashSet::new(), 0);
    let stats = parse_object_blocks_into(
        Format::Lines,
        &mut text.as_bytes(),
        &ObjectInfo::default(),
        &ParseOptions::default(),
        BlockPlan {
            threads: 2,
            block_bytes: 512,
        },
        || ThreadOfBlock {
            thread: std::thread::current().id(),
            events: 0,
        },
        &mut |block: ThreadOfBlock| {
            threads.insert(block.thread);
            events += block.events;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(stats.events, events);
    (threads, events)
}

#[test]
fn the_next_object_is_parsed_by_the_threads_of_the_one_before() {
    let (first, events) = worker_threads_of_one_object();
    assert_eq!(events, 2_000);
    assert!(!first.contains(&std::thread::current().id()));
    // A worker goes back to the pool when it sees the end of its object's queue.
    std::thread::sleep(Duration::from_millis(200));
    let (second, _) = worker_threads_of_one_object();
    assert!(
        second.is_subset(&first),
        "new threads for the second object: {second:?} against {first:?}"
    );
}
