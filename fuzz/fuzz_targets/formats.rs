//! Arbitrary bytes as one object of a registered format (the first byte picks which):
//! no panic, every event went through the driver and serializes to valid JSON with no
//! unredacted secret. A new format is fuzzed as soon as it is in the registry.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    alf_fuzz::parse_any(data);
});
