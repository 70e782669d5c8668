//! One JSON object per line (WAF, Network Firewall, Route 53 resolver query logs, and
//! one record of the JSON-records formats when another format carries it): the line
//! is parsed as an object and handed to the format's mapping function. The line driver
//! around it ([`crate::driver::drive_lines`]) bounds the line length and forwards
//! lines that fail raw.

use serde_json::Value as J;

use crate::driver::{LineContext, LineOutcome, LineParser, RecordError};
use crate::event::Event;
use crate::readers::json_records::JsonMap;
use crate::registry::{MapJsonLine, MapJsonRecord};

/// A string member, with AWS's "no value" markers (`-`, empty) as `None`.
pub(crate) fn text<'a>(map: &'a JsonMap, key: &str) -> Option<&'a str> {
    text_value(map.get(key))
}

/// A non-negative integer given as a JSON number or a numeric string (WAF and Network
/// Firewall TLS logs write some numbers as strings).
pub(crate) fn number(v: Option<&J>) -> Option<u64> {
    match v? {
        J::Number(n) => n.as_u64(),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// [`text`] of a member already looked up.
pub(crate) fn text_value(v: Option<&J>) -> Option<&str> {
    crate::util::present(v.and_then(J::as_str))
}

/// Declares the members a mapper reads from a JSON object, as a struct of optional
/// references filled by one walk over the object ([`walk`]), with the members it does
/// not name kept aside for [`Unmapped::keep`] (under `aws.<format>.*`, so that a field
/// AWS adds later is still forwarded). The keys must be listed in byte order;
/// that is checked when the crate compiles.
///
/// Why: a [`JsonMap`] search costs a handful of string comparisons, each a `memcmp`
/// call, and a mapper of twenty fields searched twenty times, then compared every key
/// with its list of mapped keys once more to find the unmapped ones. The walk
/// compares each key about twice (measured on Route 53 resolver records: about 4,000
/// of 56,000 instructions).
macro_rules! json_members {
    ($(#[$doc:meta])* struct $name:ident { $($field:ident: $key:literal,)+ }) => {
        $(#[$doc])*
        struct $name<'a> {
            $($field: Option<&'a serde_json::Value>,)+
            /// The members not named above, not null, in key order.
            unmapped: $crate::readers::json_lines::Unmapped<'a>,
        }

        const _: () = assert!(
            $crate::readers::json_lines::sorted_keys(&[$($key),+]),
            concat!(stringify!($name), ": keys must be sorted, without repeats"),
        );

        impl<'a> $name<'a> {
            fn read(map: &'a $crate::readers::json_records::JsonMap) -> Self {
                let ([$($field),+], unmapped) =
                    $crate::readers::json_lines::walk(map, &[$($key),+]);
                $name { $($field,)+ unmapped }
            }
        }
    };
}
pub(crate) use json_members;

/// The members of `map` named by `keys` (sorted, as a [`JsonMap`] iterates), and the
/// others that are not null, in one walk beside the map's own keys.
pub(crate) fn walk<'a, const N: usize>(
    map: &'a JsonMap,
    keys: &[&str; N],
) -> ([Option<&'a J>; N], Unmapped<'a>) {
    let mut found = [None; N];
    let mut unmapped = Vec::new();
    let mut next = 0;
    for (key, value) in map {
        let key = key.as_str();
        while next < N && keys[next] < key {
            next += 1;
        }
        if next < N && keys[next] == key {
            found[next] = Some(value);
            next += 1;
        } else if !value.is_null() {
            unmapped.push((key, value));
        }
    }
    (found, Unmapped(unmapped))
}

/// Members of a JSON object that its mapper does not name ([`json_members`]).
pub(crate) struct Unmapped<'a>(Vec<(&'a str, &'a J)>);

impl Unmapped<'_> {
    /// Keeps the members under `parent`, so that a field AWS adds later is still
    /// forwarded.
    pub(crate) fn keep(self, ev: &mut Event, parent: &'static str) {
        for (key, value) in self.0 {
            ev.set_dyn(parent, key, value.clone());
        }
    }
}

/// Whether `keys` are in strictly increasing byte order (as `str`'s `Ord` sorts).
pub(crate) const fn sorted_keys(keys: &[&str]) -> bool {
    let mut i = 1;
    while i < keys.len() {
        let (a, b) = (keys[i - 1].as_bytes(), keys[i].as_bytes());
        let mut j = 0;
        while j < a.len() && j < b.len() && a[j] == b[j] {
            j += 1;
        }
        let before = if j < a.len() && j < b.len() {
            a[j] < b[j]
        } else {
            a.len() < b.len()
        };
        if !before {
            return false;
        }
        i += 1;
    }
    true
}

/// Parses a line that must hold one JSON object.
pub fn json_object_line(line: &str) -> Result<JsonMap, RecordError> {
    match serde_json::from_str(line)? {
        J::Object(map) => Ok(map),
        _ => Err(RecordError::Other("record is not a JSON object".into())),
    }
}

/// Parses each line as one JSON object and maps it with `F`: the JSON-lines reader of
/// a format ([`json_lines`]), and single records of a JSON-records format
/// ([`json_record`]).
pub(crate) struct JsonObjects<F>(F);

impl<F> LineParser for JsonObjects<F>
where
    F: FnMut(JsonMap, &LineContext<'_>) -> Result<Event, RecordError>,
{
    fn parse_line(
        &mut self,
        line: &str,
        cx: &LineContext<'_>,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        out.push((self.0)(json_object_line(line)?, cx)?);
        Ok(true)
    }
}

/// The JSON-lines reader of a format: each line one object, mapped by the format.
pub(crate) fn json_lines(map: MapJsonLine) -> impl LineParser {
    JsonObjects(move |record: JsonMap, cx: &LineContext<'_>| map(record, cx))
}

/// One record of a JSON-records format given on its own (see
/// [`crate::Format::record_parser`]).
pub(crate) fn json_record(map: MapJsonRecord) -> impl LineParser {
    JsonObjects(move |record: JsonMap, cx: &LineContext<'_>| map(cx, record))
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use serde_json::json;

    use super::*;

    /// One walk finds what a search per key finds, and leaves aside exactly the
    /// members that are not named and not null, in key order.
    #[test]
    fn a_walk_finds_what_searches_find() {
        const NAMES: [&str; 9] = ["", "a", "aB", "a_b", "b", "ba", "bb", "z", "é"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let mut map = JsonMap::new();
            for name in NAMES {
                match rng.random_range(0..3) {
                    0 => {}
                    1 => drop(map.insert(name.to_owned(), J::Null)),
                    _ => drop(map.insert(name.to_owned(), json!(name.len()))),
                }
            }
            let keys: Vec<&str> = NAMES.into_iter().filter(|_| rng.random_bool(0.5)).collect();
            let keys: [&str; 4] = match keys.get(..4) {
                Some(four) => [four[0], four[1], four[2], four[3]],
                None => continue,
            };
            assert!(sorted_keys(&keys));
            let (found, unmapped) = walk(&map, &keys);
            for (key, value) in keys.iter().zip(found) {
                assert_eq!(value, map.get(*key), "{key:?}");
            }
            let expected: Vec<(&str, &J)> = map
                .iter()
                .filter(|(k, v)| !keys.contains(&k.as_str()) && !v.is_null())
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            assert_eq!(unmapped.0, expected);
        }
    }

    #[test]
    fn key_lists_must_be_sorted_and_unique() {
        // Byte order: `B` (0x42) sorts before `_` (0x5f).
        assert!(sorted_keys(&["a", "aB", "a_b", "b"]));
        assert!(!sorted_keys(&["a", "a_b", "aB", "b"]));
        assert!(sorted_keys(&["", "a", "ab", "b"]));
        assert!(!sorted_keys(&["b", "a"]));
        assert!(!sorted_keys(&["a", "a"]));
        assert!(!sorted_keys(&["ab", "a"]));
    }
}
