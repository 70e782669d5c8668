//! Short, readable causes from nested SDK errors.
//!
//! The AWS SDK's errors nest four or five levels deep (dispatch failure -> connector
//! error -> hyper error -> io error) and their `Debug` forms are unreadable in a log
//! line. These helpers keep the chain's distinct messages and name the common
//! network causes plainly.

use std::error::Error;
use std::io;

/// The messages of `e` and its sources joined with `: `, skipping repeats, on one line
/// (multi-line messages, such as the credential chain's one line per provider, are
/// joined with `; ` so a log line stays one line).
pub(crate) fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = one_line(&e.to_string());
    let mut source = e.source();
    while let Some(s) = source {
        let text = one_line(&s.to_string());
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first `io::Error` kind in the chain, if any.
pub(crate) fn io_kind(e: &(dyn Error + 'static)) -> Option<io::ErrorKind> {
    let mut current: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = err.source();
    }
    None
}

/// Whether the chain says the SDK could not load credentials (no provider in the
/// default chain had any). The SDK has no public error type for this at the dispatch
/// level, so its wording is matched.
pub(crate) fn is_credentials_error(e: &(dyn Error + 'static)) -> bool {
    let text = chain(e).to_ascii_lowercase();
    text.contains("loading credentials")
        || text.contains("no credentials")
        || text.contains("credentials provider")
        || text.contains("credentialsnotloaded")
}

/// "connection refused", "timed out"... for network failures; the chain otherwise.
pub(crate) fn network_cause(e: &(dyn Error + 'static)) -> String {
    match io_kind(e) {
        Some(io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
        Some(io::ErrorKind::TimedOut) => "timed out".to_owned(),
        _ => {
            let text = chain(e);
            if text.contains("dns error") || text.contains("failed to lookup address") {
                format!("DNS lookup failed ({text})")
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("dispatch failure")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chains_and_network_causes() {
        let refused = Outer(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(network_cause(&refused), "connection refused");
        let other = Outer(io::Error::other("tls handshake eof"));
        assert_eq!(chain(&other), "dispatch failure: tls handshake eof");
        assert_eq!(network_cause(&other), "dispatch failure: tls handshake eof");
        let multi = Outer(io::Error::other(
            "no credentials found in chain. A\n  Environment: not set\n  Profile: not set\n",
        ));
        assert_eq!(
            chain(&multi),
            "dispatch failure: no credentials found in chain. A; Environment: not set; Profile: not set"
        );
        assert!(is_credentials_error(&multi));
        assert!(!is_credentials_error(&other));
    }
}
