//! Fitting an event under the intake's size limit (`intake.max_event_bytes`).
//!
//! Sekoia.io's HTTP intake refuses events over 250,000 bytes; sending one only to have
//! it refused would fail (or dead-letter) the whole record. Most oversized events are
//! one huge string (a CloudTrail `requestParameters` blob kept in `event.original`, a
//! WAF request body), so the largest strings are cut, `event.original` first (it
//! duplicates the parsed fields), on a char boundary, and the event is tagged
//! `_truncated` so an analyst knows the value is incomplete.

use serde_json::Value;

/// The tag added to a truncated event.
pub const TRUNCATED_TAG: &str = "_truncated";
/// Attempts before giving up (each cuts one string): an event made of thousands of
/// small fields cannot be fitted by cutting strings, and goes to the dead-letter sink.
const MAX_CUTS: usize = 64;

/// `event` (JSON) cut to at most `max` bytes, or `None` when it is not a JSON object or
/// cutting strings cannot make it fit.
pub fn truncate_event(event: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(event).ok()?;
    let obj = value.as_object_mut()?;
    match obj.get_mut("tags") {
        Some(Value::Array(tags)) => {
            if !tags.iter().any(|t| t.as_str() == Some(TRUNCATED_TAG)) {
                tags.push(Value::from(TRUNCATED_TAG));
            }
        }
        None => {
            obj.insert("tags".into(), Value::from(vec![TRUNCATED_TAG]));
        }
        // A `tags` that is not an array is left alone rather than overwritten.
        Some(_) => {}
    }
    for _ in 0..MAX_CUTS {
        let out = serde_json::to_vec(&value).ok()?;
        if out.len() <= max {
            return Some(out);
        }
        let excess = out.len() - max;
        let target = pick_string(&mut value)?;
        // Escapes make the serialized string longer than the raw one, so cutting
        // `excess` raw bytes is usually enough; the loop checks and cuts again if not.
        let keep = target.len().saturating_sub(excess);
        let end = crate::intake::floor_char_boundary(target, keep);
        target.truncate(end);
    }
    None
}

/// The string to cut next: `event.original` while it is not empty, else the longest
/// non-empty string anywhere in the event.
fn pick_string(value: &mut Value) -> Option<&mut String> {
    let original_len = value
        .pointer("/event/original")
        .and_then(Value::as_str)
        .map_or(0, str::len);
    if original_len > 0 {
        return match value.pointer_mut("/event/original") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
    }
    longest_string(value).filter(|s| !s.is_empty())
}

fn longest_string(value: &mut Value) -> Option<&mut String> {
    match value {
        Value::String(s) => Some(s),
        Value::Array(items) => items
            .iter_mut()
            .filter_map(longest_string)
            .max_by_key(|s| s.len()),
        Value::Object(map) => map
            .values_mut()
            .filter_map(longest_string)
            .max_by_key(|s| s.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cuts_event_original_first_and_tags_the_event() {
        let event = json!({
            "message": "m".repeat(300),
            "event": {"original": "o".repeat(1000), "id": "abc"},
            "tags": ["aws"]
        });
        let bytes = serde_json::to_vec(&event).unwrap();
        let out = truncate_event(&bytes, 600).unwrap();
        assert!(out.len() <= 600, "{}", out.len());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], "m".repeat(300), "other fields untouched");
        assert_eq!(v["event"]["id"], "abc");
        assert!(v["event"]["original"].as_str().unwrap().len() < 1000);
        assert_eq!(v["tags"], json!(["aws", "_truncated"]));
    }

    #[test]
    fn then_the_largest_strings_on_a_char_boundary() {
        // Three-byte chars: a cut at an arbitrary byte would panic or break UTF-8.
        let event = json!({"a": "€".repeat(400), "b": "short", "event": {"original": ""}});
        let bytes = serde_json::to_vec(&event).unwrap();
        let out = truncate_event(&bytes, 500).unwrap();
        assert!(out.len() <= 500);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["a"].as_str().unwrap().chars().all(|c| c == '€'));
        assert_eq!(v["b"], "short");
        assert_eq!(v["tags"], json!(["_truncated"]));
    }

    #[test]
    fn events_that_cannot_fit_are_refused() {
        let many: serde_json::Map<String, Value> = (0..200)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect();
        let bytes = serde_json::to_vec(&Value::Object(many)).unwrap();
        assert_eq!(truncate_event(&bytes, 100), None);
        assert_eq!(truncate_event(b"not json", 100), None);
        assert_eq!(truncate_event(b"[1,2,3]", 2), None);
    }
}
