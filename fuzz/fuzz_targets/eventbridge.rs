//! Arbitrary bytes as a eventbridge object: no panic, every event serializes to valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    alf_fuzz::parse_and_check(alf_formats::Format::EventBridge, data);
});
