//! Removes presigned-URL signatures and session tokens from strings before they leave
//! the process.
//!
//! Log records quote request URLs and headers verbatim, so a presigned S3 URL in an
//! access log carries a reusable `X-Amz-Signature` and often an `X-Amz-Security-Token`.
//! The redactor is applied by the serializer to every string of every event
//! (including `message` and `event.original`), so no parser can forget it.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// What replaces a secret value.
pub const REDACTED: &str = "REDACTED";

/// Parameter and header names whose values are secrets (matched case-insensitively;
/// `signature` also covers `X-Amz-Signature`, `security-token` covers
/// `X-Amz-Security-Token`).
const SECRET_NAMES: &[&str] = &["signature", "security-token", "x-amz-credential"];

/// Finds `name=value`, `name: value` and `"name":"value"` pairs with secret names and
/// replaces the value.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: AhoCorasick,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    pub fn new() -> Self {
        let names = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(SECRET_NAMES)
            .unwrap_or_else(|_| unreachable_names());
        Redactor { names }
    }

    /// True when a JSON object key or header name is itself a secret name
    /// (`X-Amz-Security-Token`, `X-Amz-Signature`, `X-Amz-Credential`). A bare
    /// `signature` key is not one: Suricata's `alert.signature` is a rule name, and
    /// SigV2's `Signature` is only a secret as a query parameter (`Signature=`), which
    /// [`Redactor::redact`] handles.
    pub fn is_secret_name(&self, key: &str) -> bool {
        const KEY_NAMES: [&str; 4] = [
            "x-amz-security-token",
            "x-amz-signature",
            "x-amz-credential",
            "securitytoken",
        ];
        KEY_NAMES.iter().any(|n| key.eq_ignore_ascii_case(n))
    }

    /// `s` with every secret value replaced by [`REDACTED`]; borrowed when nothing
    /// matched (the common case costs one SIMD scan).
    pub fn redact<'s>(&self, s: &'s str) -> Cow<'s, str> {
        let bytes = s.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        for m in self.names.find_iter(s) {
            let Some((value_start, value_end)) = value_after(bytes, m.end()) else {
                continue;
            };
            if value_start < copied {
                continue;
            }
            let buf = out.get_or_insert_with(|| String::with_capacity(s.len()));
            buf.push_str(&s[copied..value_start]);
            buf.push_str(REDACTED);
            copied = value_end;
        }
        match out {
            None => Cow::Borrowed(s),
            Some(mut buf) => {
                buf.push_str(&s[copied..]);
                Cow::Owned(buf)
            }
        }
    }
}

/// The pattern set is a constant list of plain words; building it cannot fail. This
/// fallback keeps the constructor infallible without a panic path: an automaton that
/// matches nothing would silently disable redaction, so we build one that matches
/// the separator-free word "signature" only.
fn unreachable_names() -> AhoCorasick {
    AhoCorasick::new(["signature"]).unwrap_or_else(|_| std::process::abort())
}

/// Given the end of a secret name, finds the value span after a separator:
/// `=`, `%3D`, `:` (optionally quoted and spaced, as in JSON or headers).
fn value_after(b: &[u8], mut i: usize) -> Option<(usize, usize)> {
    let skip_quote = |i: &mut usize| {
        if b.get(*i) == Some(&b'"') || b.get(*i) == Some(&b'\\') && b.get(*i + 1) == Some(&b'"') {
            *i += if b[*i] == b'\\' { 2 } else { 1 };
        }
    };
    skip_quote(&mut i);
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    match b.get(i) {
        Some(b'=') | Some(b':') => i += 1,
        Some(b'%')
            if b.get(i + 1) == Some(&b'3') && matches!(b.get(i + 2), Some(b'D') | Some(b'd')) =>
        {
            i += 3
        }
        _ => return None,
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    skip_quote(&mut i);
    let start = i;
    while let Some(&c) = b.get(i) {
        if matches!(
            c,
            b'&' | b'"'
                | b'\\'
                | b' '
                | b'\t'
                | b','
                | b';'
                | b'}'
                | b'\''
                | b'\n'
                | b'\r'
                | b'<'
                | b'>'
        ) {
            break;
        }
        i += 1;
    }
    (i > start).then_some((start, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_query_parameters_are_redacted() {
        let r = Redactor::new();
        let s = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=abc123&X-Amz-Security-Token=FQoG%2Bzz&x=1";
        assert_eq!(
            r.redact(s),
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED&x=1"
        );
    }

    #[test]
    fn sigv2_and_lowercase_token_are_redacted() {
        let r = Redactor::new();
        let s = "GET /mybucket/f.pdf?AWSAccessKeyId=ASIAX&Expires=1385503597&Signature=hcxmv/mLM6UiE2aFPa1KQJM6Q2Q%3D&x-amz-security-token=AQoDYXdz%2Bcb HTTP/1.1";
        let out = r.redact(s);
        assert_eq!(
            out,
            "GET /mybucket/f.pdf?AWSAccessKeyId=ASIAX&Expires=1385503597&Signature=REDACTED&x-amz-security-token=REDACTED HTTP/1.1"
        );
    }

    #[test]
    fn json_and_header_forms_are_redacted() {
        let r = Redactor::new();
        assert_eq!(
            r.redact(r#"{"X-Amz-Security-Token":"tok","a":"b"}"#),
            r#"{"X-Amz-Security-Token":"REDACTED","a":"b"}"#
        );
        assert_eq!(
            r.redact("x-amz-security-token: tok"),
            "x-amz-security-token: REDACTED"
        );
        assert_eq!(
            r.redact(r#"{\"Signature\":\"abc\"}"#),
            r#"{\"Signature\":\"REDACTED\"}"#
        );
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let r = Redactor::new();
        assert!(matches!(
            r.redact("GET /index.html signature of the day"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(r.redact("Signatures=5"), Cow::Borrowed(_)));
        assert!(r.is_secret_name("X-Amz-Security-Token"));
        assert!(r.is_secret_name("x-amz-signature"));
        assert!(!r.is_secret_name("signature"));
        assert!(!r.is_secret_name("SignatureVersion"));
    }
}
