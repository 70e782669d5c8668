//! The tokenizer and field helpers of AWS's space-separated access logs (S3 server
//! access logs, ELB access and connection logs): quoted and bracketed fields, request
//! lines, URLs, TLS versions. Shared by every format with that layout.

use std::borrow::Cow;

use crate::enrich::DomainField;
use crate::event::Event;
use crate::util::{self, field};

/// Splits a line into fields: runs of spaces separate fields; `"..."` and
/// `[...]` group text containing spaces (the quotes or brackets are removed). A
/// `[` only opens a group when its first `]` ends the field, so bracketed IPv6
/// peers (`[2001:db8::1]:443`) stay whole.
///
/// A quoted field ends at a `"` followed by a space or the end of the line, so
/// stray quotes inside a user agent do not end it early; `\"` inside quotes is
/// an escaped quote. An unterminated quote or bracket runs to the end of the line.
/// A token that only starts with a quote (`"h2","http/1.1"`) is read the same way.
pub(crate) fn split_fields(line: &str) -> Vec<Cow<'_, str>> {
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(32);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        match b[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                let mut escaped = false;
                let end = loop {
                    match b.get(j) {
                        None => break b.len(),
                        Some(b'\\') if b.get(j + 1) == Some(&b'"') => {
                            escaped = true;
                            j += 2;
                        }
                        Some(b'"') if matches!(b.get(j + 1), None | Some(b' ')) => break j,
                        Some(_) => j += 1,
                    }
                };
                let text = &line[start..end];
                out.push(if escaped {
                    Cow::Owned(text.replace("\\\"", "\""))
                } else {
                    Cow::Borrowed(text)
                });
                i = end + 1;
            }
            // `[time]`, but not `[2001:db8::1]:443`: the first `]` must end the field.
            b'[' if memchr::memchr(b']', &b[i..])
                .is_some_and(|n| matches!(b.get(i + n + 1), None | Some(b' '))) =>
            {
                let start = i + 1;
                let end = memchr::memchr(b']', &b[start..]).map_or(b.len(), |n| start + n);
                out.push(Cow::Borrowed(&line[start..end]));
                i = end + 1;
            }
            _ => {
                let start = i;
                let end = memchr::memchr(b' ', &b[start..]).map_or(b.len(), |n| start + n);
                out.push(Cow::Borrowed(&line[start..end]));
                i = end;
            }
        }
    }
    out
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, `us-isob-east-1`.
pub(crate) fn looks_like_region(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|c| c.is_ascii_digit())
}

/// The TLS protocol and version from the spellings AWS logs use: `TLSv1.2`,
/// `TLSV1.2` (S3), `tlsv12` (NLB), `TLSv1`, `SSLv3`. Gives (`tls`, `1.2`).
pub(crate) fn tls_version(v: &str) -> Option<(&'static str, String)> {
    let lower = v.to_ascii_lowercase();
    let (protocol, rest) = if let Some(r) = lower.strip_prefix("tlsv") {
        ("tls", r)
    } else if let Some(r) = lower.strip_prefix("sslv") {
        ("ssl", r)
    } else {
        return None;
    };
    if rest.is_empty() || !rest.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    let version = if rest.contains('.') {
        rest.to_owned()
    } else if rest.len() == 1 {
        format!("{rest}.0")
    } else {
        format!("{}.{}", &rest[..1], &rest[1..])
    };
    Some((protocol, version))
}

/// An HTTP request line as access logs write it: `METHOD TARGET HTTP/x.y`.
/// The target may contain unencoded spaces (AWS logs what the client sent), so
/// the method is the first word and the version the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RequestLine<'a> {
    pub method: Option<&'a str>,
    pub target: Option<&'a str>,
    pub version: Option<&'a str>,
}

impl<'a> RequestLine<'a> {
    pub(crate) fn parse(line: &'a str) -> Self {
        let line = line.trim();
        let (method, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (target, version) = match rest.rsplit_once(' ') {
            Some((t, v)) if v.is_empty() || v == "-" || v.starts_with("HTTP/") => (t, v),
            _ => (rest, ""),
        };
        let method =
            Some(method).filter(|m| !m.is_empty() && m.bytes().all(|c| c.is_ascii_alphabetic()));
        RequestLine {
            method,
            target: field(target.trim()),
            version: field(version),
        }
    }

    /// `1.1` for `HTTP/1.1`.
    pub(crate) fn http_version(&self) -> Option<String> {
        self.version
            .and_then(|v| v.strip_prefix("HTTP/"))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// True for text that can be a DNS name (letters, digits, `-`, `_`, dots).
pub(crate) fn is_host_name(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with('.')
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Sets `url.domain` (and its parts) for a host name, or the bare address for an
/// IP literal as ECS asks (`url.domain` holds the IP when there is no name).
pub(crate) fn set_url_host(ev: &mut Event, enricher: &crate::Enricher, host: &str) {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Some(ip) = util::canonical_ip(bare) {
        ev.set("url.domain", ip.clone());
        ev.push_unique("related.ip", ip);
    } else {
        enricher.domain(ev, DomainField::Url, host);
    }
}

/// Maps a request target to `url.*`: an absolute URL (`http://host:80/p?q`, as
/// ELB logs it) or a path with query (`/bucket/key?x=1`, as S3 logs it).
/// `url.original` is always kept; the parts only when the URL is well formed.
/// `with_full` adds `url.full` for absolute URLs.
pub(crate) fn set_url(ev: &mut Event, enricher: &crate::Enricher, target: &str, with_full: bool) {
    ev.set("url.original", target.to_owned());
    let path_and_query = match target.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')) =>
        {
            let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..split];
            let host_port = authority.rsplit('@').next().unwrap_or(authority);
            let Some((host, port)) = split_host_port(host_port) else {
                return;
            };
            ev.set("url.scheme", scheme.to_ascii_lowercase());
            set_url_host(ev, enricher, host);
            ev.set_opt("url.port", port);
            if with_full {
                ev.set("url.full", target.to_owned());
            }
            &rest[split..]
        }
        _ => target,
    };
    let (before_fragment, fragment) = util::split_first(path_and_query, '#');
    let (path, query) = util::split_first(before_fragment, '?');
    if !path.is_empty() {
        ev.set("url.path", path.to_owned());
        let last = path.rsplit('/').next().unwrap_or("");
        if let Some((_, ext)) = last
            .rsplit_once('.')
            .filter(|(stem, ext)| !stem.is_empty() && !ext.is_empty() && ext.len() <= 16)
        {
            ev.set("url.extension", ext.to_ascii_lowercase());
        }
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        ev.set("url.query", q.to_owned());
    }
    if let Some(f) = fragment.filter(|f| !f.is_empty()) {
        ev.set("url.fragment", f.to_owned());
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`. `None` when a port is present but
/// not a number, or the host is empty.
fn split_host_port(v: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if v.starts_with('[') {
        let close = v.find(']')?;
        let (h, after) = v.split_at(close + 1);
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return None,
        }
    } else {
        util::split_last(v, ':')
    };
    if host.is_empty() {
        return None;
    }
    match port {
        Some(p) => Some((host, Some(p.parse().ok()?))),
        None => Some((host, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    #[test]
    fn fields_split_on_spaces_quotes_and_brackets() {
        let f = split_fields(
            r#"a  [01/Jan/2024:00:00:00 +0000] "GET /x y HTTP/1.1" "-" "ua \"q\" x" "h2","http/1.1" last"#,
        );
        assert_eq!(
            f,
            vec![
                "a",
                "01/Jan/2024:00:00:00 +0000",
                "GET /x y HTTP/1.1",
                "-",
                r#"ua "q" x"#,
                r#"h2","http/1.1"#,
                "last"
            ]
        );
        // unterminated quote runs to the end of the line; nothing is lost
        assert_eq!(split_fields(r#"a "b c"#), vec!["a", "b c"]);
        assert_eq!(split_fields(r#"a "" b"#), vec!["a", "", "b"]);
        assert!(split_fields("   ").is_empty());
        assert_eq!(
            split_fields("[2001:db8::1]:443 [x](y) [a b]"),
            vec!["[2001:db8::1]:443", "[x](y)", "a b"]
        );
    }

    #[test]
    fn tls_versions_and_regions() {
        assert_eq!(tls_version("TLSv1.2"), Some(("tls", "1.2".into())));
        assert_eq!(tls_version("TLSV1.3"), Some(("tls", "1.3".into())));
        assert_eq!(tls_version("tlsv12"), Some(("tls", "1.2".into())));
        assert_eq!(tls_version("TLSv1"), Some(("tls", "1.0".into())));
        assert_eq!(tls_version("SSLv3"), Some(("ssl", "3.0".into())));
        assert_eq!(tls_version("-"), None);
        assert_eq!(tls_version("TLSvX"), None);
        assert!(looks_like_region("us-gov-west-1"));
        assert!(looks_like_region("eu-central-1"));
        assert!(!looks_like_region("s3-external-1x"));
        assert!(!looks_like_region("dualstack"));
    }

    #[test]
    fn request_lines_keep_spaces_in_the_target() {
        let r = RequestLine::parse("GET http://h:80/a?b c HTTP/1.1");
        assert_eq!(r.method, Some("GET"));
        assert_eq!(r.target, Some("http://h:80/a?b c"));
        assert_eq!(r.http_version().as_deref(), Some("1.1"));
        let r = RequestLine::parse("- - - ");
        assert_eq!(r, RequestLine::default());
        let r = RequestLine::parse("- http://h:80-/ ");
        assert_eq!(
            (r.method, r.target, r.version),
            (None, Some("http://h:80-/"), None)
        );
    }

    #[test]
    fn urls_are_split_into_ecs_parts() {
        let en = crate::Enricher::new();
        let mut ev = Event::new();
        set_url(
            &mut ev,
            &en,
            "https://[2001:db8::1]:8443/a/b.JSON?x=1#frag",
            true,
        );
        assert_eq!(ev.get_str("url.domain"), Some("2001:db8::1"));
        assert_eq!(ev.get("url.port"), Some(&Value::U64(8443)));
        assert_eq!(ev.get_str("url.path"), Some("/a/b.JSON"));
        assert_eq!(ev.get_str("url.extension"), Some("json"));
        assert_eq!(ev.get_str("url.query"), Some("x=1"));
        assert_eq!(ev.get_str("url.fragment"), Some("frag"));
        assert_eq!(ev.get_str("url.scheme"), Some("https"));
        assert_eq!(
            ev.get_str("url.full"),
            Some("https://[2001:db8::1]:8443/a/b.JSON?x=1#frag")
        );

        let mut ev = Event::new();
        set_url(&mut ev, &en, "http://h.example.com:80-/", true);
        assert_eq!(
            ev.get_str("url.original"),
            Some("http://h.example.com:80-/")
        );
        assert!(!ev.contains("url.domain"));
        assert!(!ev.contains("url.path"));
    }
}
