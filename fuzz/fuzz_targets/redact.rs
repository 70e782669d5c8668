//! Redaction of arbitrary text: no panic, no secret parameter value survives, and text
//! without any secret name comes back unchanged (borrowed, no allocation).
#![no_main]

use std::borrow::Cow;

use alf_formats::Redactor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let redactor = Redactor::new();
    let once = redactor.redact(&text);
    if let Some(leak) = alf_fuzz::unredacted_secret(&once) {
        panic!("unredacted `{leak}` in {once:?} (input {text:?})");
    }
    let lower = text.to_ascii_lowercase();
    let named = ["signature", "security-token", "x-amz-credential"]
        .iter()
        .any(|n| lower.contains(n));
    if !named {
        assert!(
            matches!(once, Cow::Borrowed(_)),
            "changed text without secret names: {text:?}"
        );
    }
    let _ = redactor.is_secret_name(&text);
});
