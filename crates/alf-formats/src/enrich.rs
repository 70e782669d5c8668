//! Enrichment shared by all formats: user-agent parsing (cached), registered-domain
//! split from the public suffix list, and `related.*` bookkeeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::event::{Event, Value};
use crate::util::percent_decode;

/// User-agent fields as ECS names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAgentInfo {
    pub name: String,
    pub version: Option<String>,
    pub os_name: String,
    pub os_version: Option<String>,
    pub device_name: String,
}

fn join_version(parts: [Option<&str>; 3]) -> Option<String> {
    let mut out = String::new();
    for p in parts.into_iter().map_while(|p| p.filter(|s| !s.is_empty())) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(p);
    }
    (!out.is_empty()).then_some(out)
}

/// Parses a user agent with uap-core's rules, uncached.
pub fn parse_user_agent(ua: &str) -> UserAgentInfo {
    let Some(rules) = crate::user_agent::UserAgentRules::get() else {
        return UserAgentInfo {
            name: "Other".into(),
            os_name: "Other".into(),
            device_name: "Other".into(),
            ..Default::default()
        };
    };
    let found = rules.extract(ua);
    let (name, version) = match found.agent {
        Some(a) => (
            a.family,
            join_version([a.major.as_deref(), a.minor.as_deref(), a.patch.as_deref()]),
        ),
        None => ("Other".to_owned(), None),
    };
    let (os_name, os_version) = match found.os {
        Some(o) => (
            o.family,
            join_version([o.major.as_deref(), o.minor.as_deref(), o.patch.as_deref()]),
        ),
        None => ("Other".to_owned(), None),
    };
    let device_name = found.device.unwrap_or_else(|| "Other".to_owned());
    UserAgentInfo {
        name,
        version,
        os_name,
        os_version,
        device_name,
    }
}

/// A map from text to shared results, bounded by clearing it when full: simple, and
/// the entries that matter (a log repeats a handful of agents and hosts) come back
/// within the next few records.
///
/// Keys are hashed with XXH3: a user agent is ~130 bytes looked up once per event,
/// and SipHash (the std default, built against flooding) cost more than the look-up
/// saves here, where an attacker can at worst fill the cache, which then clears.
#[derive(Debug)]
struct BoundedCache<V> {
    map: Mutex<HashMap<Box<str>, Arc<V>, Xxh3DefaultBuilder>>,
    max: usize,
}

impl<V> BoundedCache<V> {
    fn new(max: usize) -> Self {
        BoundedCache {
            map: Mutex::new(HashMap::with_hasher(Xxh3DefaultBuilder)),
            max,
        }
    }

    fn get(&self, key: &str) -> Option<Arc<V>> {
        self.map.lock().ok()?.get(key).map(Arc::clone)
    }

    fn insert(&self, key: &str, value: &Arc<V>) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.max {
                map.clear();
            }
            map.insert(key.into(), Arc::clone(value));
        }
    }
}

/// Caches user-agent results: a log file repeats a handful of agents thousands of
/// times, and one uap parse costs tens of microseconds. Keyed by the text as the log
/// wrote it (CloudFront percent-encodes it), so a repeated agent is neither decoded
/// nor copied again: its decoded original is shared too.
#[derive(Debug)]
pub struct UserAgentCache {
    cache: BoundedCache<CachedAgent>,
}

impl Default for UserAgentCache {
    fn default() -> Self {
        UserAgentCache {
            cache: BoundedCache::new(UA_CACHE_MAX),
        }
    }
}

/// A cached result, also held as shared strings: every event of a repeated agent
/// emits them as [`Value::Shared`] (a reference-count increment) instead of copying
/// five strings per event.
#[derive(Debug)]
struct CachedAgent {
    /// The agent percent-decoded (`user_agent.original`).
    original: Arc<str>,
    info: Arc<UserAgentInfo>,
    name: Arc<str>,
    version: Option<Arc<str>>,
    os_name: Arc<str>,
    os_version: Option<Arc<str>>,
    device_name: Arc<str>,
}

impl CachedAgent {
    fn new(original: &str, info: UserAgentInfo) -> Self {
        CachedAgent {
            original: original.into(),
            name: info.name.as_str().into(),
            version: info.version.as_deref().map(Arc::from),
            os_name: info.os_name.as_str().into(),
            os_version: info.os_version.as_deref().map(Arc::from),
            device_name: info.device_name.as_str().into(),
            info: Arc::new(info),
        }
    }
}

/// Bound on cached agents.
const UA_CACHE_MAX: usize = 8192;

/// Every agent parsed in the process, behind each enricher's own cache: an enricher
/// made for one object (each worker of a block-parallel parse has its own, see
/// `parallel`) then parses none of the agents another one already has. A cold
/// enricher cost 23 ms more than a warm one on 100,000 CloudFront records (a few
/// dozen agents, each a pass over the rules), paid again by every worker of every
/// object. An enricher's own cache keeps the hot path free of this lock, and its
/// shared strings of another thread's reference counts.
static PARSED_AGENTS: ParsedAgents =
    ParsedAgents(Mutex::new(HashMap::with_hasher(Xxh3DefaultBuilder)));

/// Bound on [`PARSED_AGENTS`]: the agents of a log are a few dozen; the bound only
/// stops a flood of unique agents from growing it (it then clears, as the caches do).
const PARSED_AGENTS_MAX: usize = 2048;

struct ParsedAgents(Mutex<HashMap<Box<str>, UserAgentInfo, Xxh3DefaultBuilder>>);

impl ParsedAgents {
    /// `parse_user_agent(decoded)`, parsed once per process.
    fn parse(&self, decoded: &str) -> UserAgentInfo {
        if let Ok(known) = self.0.lock()
            && let Some(info) = known.get(decoded)
        {
            return info.clone();
        }
        // Parsed without the lock: another thread may parse the same agent meanwhile,
        // which costs a parse, not a wrong result.
        let info = parse_user_agent(decoded);
        if let Ok(mut known) = self.0.lock() {
            if known.len() >= PARSED_AGENTS_MAX {
                known.clear();
            }
            known.insert(decoded.into(), info.clone());
        }
        info
    }
}

impl UserAgentCache {
    /// The parsed fields of `raw`, an agent as a log wrote it (percent-encoded or not).
    pub fn get(&self, raw: &str) -> Arc<UserAgentInfo> {
        Arc::clone(&self.entry(raw).info)
    }

    fn entry(&self, raw: &str) -> Arc<CachedAgent> {
        if let Some(hit) = self.cache.get(raw) {
            return hit;
        }
        let decoded = percent_decode(raw);
        let agent = Arc::new(CachedAgent::new(&decoded, PARSED_AGENTS.parse(&decoded)));
        self.cache.insert(raw, &agent);
        agent
    }
}

/// A host name's domain fields as shared strings: logs repeat a few hosts (the
/// distribution's alternate names, a bucket endpoint) on every record, and CloudFront
/// splits each one twice per event (destination and url).
#[derive(Debug)]
struct CachedHost {
    /// The host in lower case.
    host: Arc<str>,
    parts: Option<SharedParts>,
}

#[derive(Debug)]
struct SharedParts {
    registered: Arc<str>,
    subdomain: Option<Arc<str>>,
    suffix: Arc<str>,
}

impl CachedHost {
    fn new(host: String) -> Self {
        let parts = split_domain(&host).map(|p| SharedParts {
            registered: p.registered.into(),
            subdomain: p.subdomain.map(Arc::from),
            suffix: p.suffix.into(),
        });
        CachedHost {
            host: host.into(),
            parts,
        }
    }
}

/// Bound on cached hosts.
const DOMAIN_CACHE_MAX: usize = 4096;

/// Host names (as written, port removed) to their domain fields. IP literals are not
/// cached: a hit therefore means the text is a name.
#[derive(Debug)]
struct DomainCache(BoundedCache<CachedHost>);

impl Default for DomainCache {
    fn default() -> Self {
        DomainCache(BoundedCache::new(DOMAIN_CACHE_MAX))
    }
}

/// Shared enrichment state (thread-safe; one per process is enough).
#[derive(Debug, Default)]
pub struct Enricher {
    ua: UserAgentCache,
    domains: DomainCache,
}

impl Enricher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `user_agent.original` and the parsed `user_agent.*` fields. `raw` may be
    /// percent-encoded (CloudFront writes `%20` for spaces); the original keeps the
    /// decoded text. Absent values (`-`, empty) set nothing.
    pub fn user_agent(&self, ev: &mut Event, raw: &str) {
        let Some(raw) = crate::util::field(raw) else {
            return;
        };
        let agent = self.ua.entry(raw);
        let shared = |s: &Arc<str>| Value::Shared(Arc::clone(s));
        ev.set("user_agent.original", shared(&agent.original));
        ev.set("user_agent.name", shared(&agent.name));
        ev.set_opt("user_agent.version", agent.version.as_ref().map(shared));
        ev.set("user_agent.os.name", shared(&agent.os_name));
        ev.set_opt(
            "user_agent.os.version",
            agent.os_version.as_ref().map(shared),
        );
        ev.set("user_agent.device.name", shared(&agent.device_name));
    }

    /// Sets `<prefix>.domain`, `.registered_domain`, `.subdomain` and
    /// `.top_level_domain` for a host name (IP literals and ports are handled), and adds
    /// it to `related.hosts`. `prefix` is one of the ECS objects with a domain.
    pub fn domain(&self, ev: &mut Event, prefix: DomainField, host: &str) {
        let Some(host) = crate::util::field(host) else {
            return;
        };
        let host = host.trim_end_matches('.');
        let host = strip_port(host);
        if host.is_empty() {
            return;
        }
        let paths = prefix.paths();
        if let Some(cached) = self.domains.0.get(host) {
            set_domain(ev, &paths, &cached);
            return;
        }
        if let Some(ip) = crate::util::canonical_ip(host) {
            // An IP literal has no domain parts. Objects with an `.ip` field get it
            // there; `url.domain` and `dns.question.name` hold the literal itself.
            match paths.ip {
                Some(ip_path) => {
                    ev.set(ip_path, ip.clone());
                    if let Some(address) = paths.address {
                        ev.set(address, ip.clone());
                    }
                }
                None => ev.set(paths.domain, ip.clone()),
            }
            ev.push_unique("related.ip", ip);
            return;
        }
        let cached = Arc::new(CachedHost::new(host.to_ascii_lowercase()));
        self.domains.0.insert(host, &cached);
        set_domain(ev, &paths, &cached);
    }
}

/// Writes a name's domain fields (shared strings) and adds it to `related.hosts`.
fn set_domain(ev: &mut Event, paths: &DomainPaths, cached: &CachedHost) {
    let shared = |s: &Arc<str>| Value::Shared(Arc::clone(s));
    ev.set(paths.domain, shared(&cached.host));
    if let Some(p) = &cached.parts {
        ev.set(paths.registered_domain, shared(&p.registered));
        ev.set_opt(paths.subdomain, p.subdomain.as_ref().map(shared));
        ev.set(paths.top_level_domain, shared(&p.suffix));
    }
    ev.push_unique("related.hosts", shared(&cached.host));
}

/// Sets `network.forwarded_ip` to the first address of an `X-Forwarded-For` value (the
/// original client; proxies append theirs) and adds it to `related.ip`. A first entry
/// that is not an address sets nothing.
pub fn forwarded_for(ev: &mut Event, header: &str) {
    if let Some(ip) = header
        .split(',')
        .next()
        .and_then(|first| crate::util::canonical_ip(first.trim()))
    {
        ev.set("network.forwarded_ip", ip.clone());
        ev.push_unique("related.ip", ip);
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The parts of a domain name from the public suffix list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainParts {
    pub registered: String,
    pub subdomain: Option<String>,
    pub suffix: String,
}

/// Splits a lower-case host into registered domain, subdomain and public suffix.
///
/// Uses the ICANN section of the public suffix list only: `dtest.cloudfront.net` is
/// registered domain `cloudfront.net` with suffix `net` (as SIEMs and analysts expect),
/// not a private-section suffix `cloudfront.net`.
pub fn split_domain(host: &str) -> Option<DomainParts> {
    let mut suffix = psl::suffix(host.as_bytes())?;
    while suffix.typ() == Some(psl::Type::Private) {
        let bytes = suffix.as_bytes();
        let dot = memchr::memchr(b'.', bytes)?;
        suffix = psl::suffix(&bytes[dot + 1..])?;
    }
    let suffix = std::str::from_utf8(suffix.as_bytes()).ok()?;
    let rest = host.strip_suffix(suffix)?.strip_suffix('.')?;
    if rest.is_empty() {
        return None;
    }
    let (subdomain, label) = match rest.rsplit_once('.') {
        Some((sub, label)) => (Some(sub), label),
        None => (None, rest),
    };
    Some(DomainParts {
        registered: format!("{label}.{suffix}"),
        subdomain: subdomain.filter(|s| !s.is_empty()).map(str::to_owned),
        suffix: suffix.to_owned(),
    })
}

/// The ECS objects that carry a domain name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainField {
    Destination,
    Source,
    Url,
    Server,
    Client,
    DnsQuestion,
}

/// The ECS field names one [`DomainField`] writes.
struct DomainPaths {
    domain: &'static str,
    registered_domain: &'static str,
    subdomain: &'static str,
    top_level_domain: &'static str,
    /// Where an IP literal goes instead (None: into `domain` itself).
    ip: Option<&'static str>,
    address: Option<&'static str>,
}

macro_rules! endpoint_paths {
    ($p:literal) => {
        DomainPaths {
            domain: concat!($p, ".domain"),
            registered_domain: concat!($p, ".registered_domain"),
            subdomain: concat!($p, ".subdomain"),
            top_level_domain: concat!($p, ".top_level_domain"),
            ip: Some(concat!($p, ".ip")),
            address: Some(concat!($p, ".address")),
        }
    };
}

impl DomainField {
    fn paths(self) -> DomainPaths {
        match self {
            DomainField::Destination => endpoint_paths!("destination"),
            DomainField::Source => endpoint_paths!("source"),
            DomainField::Server => endpoint_paths!("server"),
            DomainField::Client => endpoint_paths!("client"),
            DomainField::Url => DomainPaths {
                domain: "url.domain",
                registered_domain: "url.registered_domain",
                subdomain: "url.subdomain",
                top_level_domain: "url.top_level_domain",
                ip: None,
                address: None,
            },
            DomainField::DnsQuestion => DomainPaths {
                domain: "dns.question.name",
                registered_domain: "dns.question.registered_domain",
                subdomain: "dns.question.subdomain",
                top_level_domain: "dns.question.top_level_domain",
                ip: None,
                address: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent one enricher parsed is known to every other one (the block workers'
    /// enrichers of the next object among them), with the same fields.
    #[test]
    fn an_agent_is_parsed_once_per_process() {
        let agent = "TestAgent/7.3 (an agent only this test uses; Linux x86_64)";
        let known = || PARSED_AGENTS.0.lock().unwrap().contains_key(agent);
        assert!(!known());
        let first = Enricher::new().ua.get(agent);
        assert!(known());
        let second = Enricher::new().ua.get(agent);
        assert_eq!(first, second);
        assert_eq!(*first, parse_user_agent(agent));
    }

    #[test]
    fn user_agent_is_parsed_and_decoded() {
        let e = Enricher::new();
        let mut ev = Event::new();
        e.user_agent(&mut ev, "Mozilla/5.0%20(Macintosh;%20Intel%20Mac%20OS%20X%2010_15_7)%20AppleWebKit/605.1.15%20(KHTML,%20like%20Gecko)%20Version/17.1%20Safari/605.1.15");
        assert_eq!(ev.get_str("user_agent.name"), Some("Safari"));
        assert_eq!(ev.get_str("user_agent.version"), Some("17.1"));
        assert_eq!(ev.get_str("user_agent.os.name"), Some("Mac OS X"));
        assert!(
            ev.get_str("user_agent.original")
                .unwrap()
                .starts_with("Mozilla/5.0 (Macintosh;")
        );
        // cached result is identical
        let mut ev2 = Event::new();
        e.user_agent(&mut ev2, "Mozilla/5.0%20(Macintosh;%20Intel%20Mac%20OS%20X%2010_15_7)%20AppleWebKit/605.1.15%20(KHTML,%20like%20Gecko)%20Version/17.1%20Safari/605.1.15");
        assert_eq!(ev, ev2);
    }

    #[test]
    fn domains_are_split_with_the_public_suffix_list() {
        let e = Enricher::new();
        let mut ev = Event::new();
        e.domain(&mut ev, DomainField::Destination, "dtest.cloudfront.net");
        assert_eq!(
            ev.get_str("destination.registered_domain"),
            Some("cloudfront.net")
        );
        assert_eq!(ev.get_str("destination.subdomain"), Some("dtest"));
        assert_eq!(ev.get_str("destination.top_level_domain"), Some("net"));
        let p = split_domain("www.example.co.uk").unwrap();
        assert_eq!(
            (
                p.registered.as_str(),
                p.subdomain.as_deref(),
                p.suffix.as_str()
            ),
            ("example.co.uk", Some("www"), "co.uk")
        );
        let mut ev = Event::new();
        e.domain(&mut ev, DomainField::Url, "Example.COM:8443");
        assert_eq!(ev.get_str("url.domain"), Some("example.com"));
        assert!(ev.get("url.subdomain").is_none());
        let mut ev = Event::new();
        e.domain(&mut ev, DomainField::Url, "[2001:db8::1]:443");
        e.domain(&mut ev, DomainField::DnsQuestion, "Mail.Example.org.");
        e.domain(&mut ev, DomainField::Source, "192.0.2.7");
        let j = ev.to_json();
        assert_eq!(j["url"], serde_json::json!({"domain": "2001:db8::1"}));
        assert_eq!(j["dns"]["question"]["name"], "mail.example.org");
        assert_eq!(j["dns"]["question"]["registered_domain"], "example.org");
        assert_eq!(j["source"]["ip"], "192.0.2.7");
        assert_eq!(j["source"]["address"], "192.0.2.7");
        assert_eq!(
            j["related"]["ip"],
            serde_json::json!(["2001:db8::1", "192.0.2.7"])
        );
    }

    #[test]
    fn cached_domains_give_the_fields_of_the_first_split() {
        let e = Enricher::new();
        let hosts = [
            "WWW.Example.co.uk:443",
            "www.example.co.uk",
            "localhost",
            "com",
            "dtest.cloudfront.net.",
            "192.0.2.7",
            "[2001:db8::1]:443",
        ];
        let run = |ev: &mut Event| {
            for h in hosts {
                e.domain(ev, DomainField::Destination, h);
                e.domain(ev, DomainField::Url, h);
            }
        };
        let (mut first, mut second) = (Event::new(), Event::new());
        run(&mut first);
        run(&mut second);
        assert_eq!(first.to_json_string(None), second.to_json_string(None));
        let j = second.to_json();
        assert_eq!(j["url"]["registered_domain"], "cloudfront.net");
        assert_eq!(
            j["related"]["hosts"],
            serde_json::json!([
                "www.example.co.uk",
                "localhost",
                "com",
                "dtest.cloudfront.net"
            ])
        );
        // A host pushed by a parser as an owned string is not listed twice.
        let mut ev = Event::new();
        ev.push_unique("related.hosts", "www.example.co.uk".to_string());
        e.domain(&mut ev, DomainField::Url, "www.example.co.uk");
        assert_eq!(
            ev.to_json()["related"]["hosts"],
            serde_json::json!(["www.example.co.uk"])
        );
    }
}
