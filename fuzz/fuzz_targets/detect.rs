//! Format detection on an arbitrary key and object head: no panic, and a decision is
//! always made (parse as some format, skip with a reason, or refuse the container).
#![no_main]

use alf_formats::detect::{self, Decision, DetectRule, FormatDetector};
use alf_formats::{Format, FormatOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: key length; then the key; the rest is the object's first bytes.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len());
    let (key, head) = rest.split_at(n);
    let key = String::from_utf8_lossy(key);

    let plain = FormatDetector::default();
    match plain.decide("amzn-s3-demo-logs", &key, head) {
        Decision::Parse { format, .. } => assert!(Format::ALL.contains(&format)),
        Decision::Skip { reason } => assert!(!reason.is_empty()),
        Decision::Refuse { container } => assert!(!container.is_empty()),
    }
    let _ = detect::by_key(&key);
    let _ = detect::by_content(head);

    // A configured rule wins over key layouts and content.
    let rules = FormatDetector::new(vec![DetectRule {
        bucket: None,
        key_prefix: Some("custom/".into()),
        key_regex: None,
        format: Format::Ndjson,
        options: FormatOptions::default(),
    }]);
    let decided = rules.decide("amzn-s3-demo-logs", &key, head);
    let refused = matches!(plain.decide("b", "k", head), Decision::Refuse { .. });
    if key.starts_with("custom/") && !key.contains("CloudTrail-Digest") && !refused {
        assert!(
            matches!(
                decided,
                Decision::Parse {
                    format: Format::Ndjson,
                    ..
                }
            ),
            "rule ignored for {key:?}: {decided:?}"
        );
    }
});
