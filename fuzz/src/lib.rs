//! Shared checks for the fuzz targets.
//!
//! The `formats` target feeds arbitrary bytes (the first byte picks the format from
//! the registry) to [`alf_formats::parse_object`] and
//! checks the project's contract for any input:
//! * no panic (libFuzzer reports it), and parsing an in-memory object never fails
//!   (a malformed record is forwarded raw, never turned into an object-level error
//!   that would drop or endlessly retry the whole object);
//! * every emitted event went through the driver (`event.dataset` is the format's)
//!   and the stats count every event;
//! * every event serializes (with redaction, as shipped) to a valid JSON object;
//! * no string value in the output still carries an unredacted secret parameter
//!   (`Signature=`, `Security-Token=`, `X-Amz-Credential=` followed by a value).

use alf_formats::{
    Enricher, Event, Format, FormatOptions, ObjectInfo, ParseOptions, Redactor, parse_object,
};

/// Secret parameter names (lower case, with the `=` separator) whose value must never
/// reach the output: the redactor replaces it with `REDACTED`.
const SECRET_PARAMS: [&str; 3] = ["signature=", "security-token=", "x-amz-credential="];

/// The redactor's replacement text.
pub const REDACTED: &str = alf_formats::redact::REDACTED;

/// Returns the first `name=value` pair in `s` (ASCII case-insensitive name) whose value
/// starts with an ASCII alphanumeric run other than exactly `REDACTED`.
///
/// Sound for redactor output: a redacted value is replaced by `REDACTED` and the
/// redactor only stops a value at a non-alphanumeric byte, so after a redaction the
/// alphanumeric run following `name=` is exactly `REDACTED`; any other run is a value
/// that was never redacted.
pub fn unredacted_secret(s: &str) -> Option<&str> {
    let lower = s.to_ascii_lowercase();
    for name in SECRET_PARAMS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(name) {
            let start = from + i + name.len();
            let run = s.as_bytes()[start..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            if run > 0 && &s[start..start + run] != REDACTED {
                return Some(&s[from + i..start + run]);
            }
            from = start;
        }
    }
    None
}

fn check_strings(v: &serde_json::Value, path: &mut String, format: Format) {
    match v {
        serde_json::Value::String(s) => {
            if let Some(leak) = unredacted_secret(s) {
                panic!("{format}: unredacted secret `{leak}` at {path}: {s:?}");
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|i| check_strings(i, path, format))
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                check_strings(v, path, format);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Checks one event as the daemon ships it.
pub fn check_event(event: &Event, format: Format, redactor: &Redactor) {
    let json = event.to_json_string(Some(redactor));
    let value: serde_json::Value = match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(e) => panic!("{format}: invalid JSON ({e}): {json}"),
    };
    assert!(value.is_object(), "{format}: not an object: {json}");
    assert_eq!(
        value["event"]["dataset"],
        format.dataset(),
        "{format}: event bypassed the driver: {json}"
    );
    check_strings(&value, &mut String::new(), format);
}

/// Parses `data` as one object of `format` and checks every event (see the crate doc).
/// Options vary with the input length so both settings get exercised without taking
/// bytes away from the parser.
pub fn parse_and_check(format: Format, data: &[u8]) {
    let object = ObjectInfo {
        bucket: "amzn-s3-demo-logs".into(),
        key: "fuzz/object.log".into(),
        version: "v1".into(),
    };
    let format_options = if format == Format::VpcFlow && data.len().is_multiple_of(3) {
        let fields = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status";
        let fields = serde_json::Value::from(fields.split(' ').collect::<Vec<_>>());
        match format.options_from([("vpc_flow_fields".to_owned(), fields)]) {
            Ok(options) => options,
            Err(e) => panic!("the fuzz target's VPC field list was refused: {e:?}"),
        }
    } else {
        FormatOptions::default()
    };
    let options = ParseOptions {
        keep_original: !data.len().is_multiple_of(2),
        format_options,
    };
    let enricher = Enricher::new();
    let mut events: Vec<Event> = Vec::new();
    let mut reader = data;
    let stats = match parse_object(
        format,
        &mut reader,
        &object,
        &options,
        &enricher,
        &mut events,
    ) {
        Ok(s) => s,
        Err(e) => panic!("{format}: in-memory object failed to parse: {e}"),
    };
    assert_eq!(
        stats.events,
        events.len() as u64,
        "{format}: stats.events does not match the events emitted"
    );
    let redactor = Redactor::new();
    for event in &events {
        check_event(event, format, &redactor);
    }
}

/// The format an input of the `formats` target is for: its first byte picks a format
/// of the registry ([`Format::ALL`], modulo its length), so every registered format is
/// fuzzed by one target, and a new format without touching the fuzzers.
pub fn format_of(first: u8) -> Format {
    Format::ALL[usize::from(first) % Format::ALL.len()]
}

/// The `formats` target: the first byte picks the format ([`format_of`]), the rest is
/// one object of it, checked by [`parse_and_check`].
pub fn parse_any(data: &[u8]) {
    if let Some((&first, object)) = data.split_first() {
        parse_and_check(format_of(first), object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_unredacted_values() {
        assert_eq!(
            unredacted_secret("a?X-Amz-Signature=abc1&b"),
            Some("Signature=abc1")
        );
        assert_eq!(unredacted_secret("a?X-Amz-Signature=REDACTED&b"), None);
        assert_eq!(unredacted_secret("Signatures=5 signature="), None);
        assert_eq!(
            unredacted_secret("x-amz-security-token=REDACTEDx"),
            Some("security-token=REDACTEDx")
        );
        let r = Redactor::new();
        let s = "GET /k?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=ff00&Signature=REDACTED HTTP/1.1";
        assert!(unredacted_secret(s).is_some());
        assert_eq!(unredacted_secret(&r.redact(s)), None);
    }
}
