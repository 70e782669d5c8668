//! Value pools shared by the generators: user agents, addresses, accounts, regions.
//!
//! The mixes are weighted to look like real traffic (mostly browsers and SDKs, some
//! bots and scanners, a tail of odd clients), because parser cost depends on them:
//! user-agent parsing is cached per distinct string, IPv6 parses slower than IPv4, and
//! presigned URLs trigger redaction.

use std::fmt::Write;

use crate::rng::Rng;

/// About fifty user agents, weighted roughly by how often they appear in CDN logs.
pub const USER_AGENTS: &[(u32, &str)] = &[
    (
        90,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    ),
    (
        60,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
    ),
    (
        45,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    ),
    (
        40,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3.1 Mobile/15E148 Safari/604.1",
    ),
    (
        25,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    ),
    (
        35,
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36",
    ),
    (
        15,
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.178 Mobile Safari/537.36",
    ),
    (
        30,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15",
    ),
    (
        20,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
    ),
    (
        8,
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0",
    ),
    (
        6,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    ),
    (
        18,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.2365.66",
    ),
    (
        5,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 OPR/107.0.0.0",
    ),
    (
        10,
        "Mozilla/5.0 (iPad; CPU OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1",
    ),
    (
        4,
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    ),
    (
        2,
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    ),
    (
        12,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ),
    (
        5,
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/122.0.6261.94 Safari/537.36",
    ),
    (
        6,
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    ),
    (
        3,
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    ),
    (
        3,
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    ),
    (
        2,
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    ),
    (
        2,
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    ),
    (
        2,
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    ),
    (2, "Twitterbot/1.0"),
    (
        2,
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    ),
    (
        1,
        "Mozilla/5.0 (compatible; Applebot/0.1; +http://www.apple.com/go/applebot)",
    ),
    (8, "curl/8.4.0"),
    (3, "curl/7.81.0"),
    (4, "Wget/1.21.2"),
    (5, "python-requests/2.31.0"),
    (2, "Go-http-client/1.1"),
    (2, "Go-http-client/2.0"),
    (2, "okhttp/4.12.0"),
    (2, "axios/1.6.7"),
    (1, "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"),
    (1, "Java/17.0.9"),
    (1, "Apache-HttpClient/4.5.14 (Java/17.0.9)"),
    (
        4,
        "aws-cli/2.15.19 Python/3.11.6 Linux/6.1.72-96.166.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off command/s3.cp",
    ),
    (
        4,
        "aws-sdk-java/2.21.29 Linux/5.10.205-195.807.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.9+8-LTS Java/17.0.9 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
    ),
    (
        3,
        "Boto3/1.34.34 md/Botocore#1.34.34 ua/2.0 os/linux#6.1.72 md/arch#x86_64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.34",
    ),
    (
        2,
        "aws-sdk-go-v2/1.24.1 os/linux lang/go#1.21.6 md/GOOS#linux md/GOARCH#amd64 api/s3#1.48.1",
    ),
    (
        2,
        "aws-sdk-js/3.511.0 ua/2.0 os/linux#5.10.205 lang/js md/nodejs#20.11.0 api/s3#3.511.0",
    ),
    (1, "Amazon CloudFront"),
    (
        1,
        "Amazon-Route53-Health-Check-Service (ref 0a1b2c3d-4e5f-6789-abcd-ef0123456789; report http://amzn.to/1vsZADi)",
    ),
    (1, "ELB-HealthChecker/2.0"),
    (1, "Mozilla/5.0 zgrab/0.x"),
    (
        1,
        "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    ),
    (
        1,
        "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
    ),
    (1, "sqlmap/1.7.12#stable (https://sqlmap.org)"),
    (
        1,
        "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    ),
    (1, "PostmanRuntime/7.36.3"),
];

/// CloudFront edge locations (airport code, number, PoP type).
pub const EDGE_LOCATIONS: &[&str] = &[
    "IAD89-C1", "IAD55-P4", "IAD12-C2", "JFK50-C1", "EWR53-C2", "ATL56-C4", "ORD51-C3", "DFW56-P1",
    "LAX50-P2", "LAX3-C4", "SFO53-C1", "SEA19-C3", "MIA3-C2", "YUL62-C2", "GRU3-C1", "LHR62-C2",
    "LHR50-P3", "MAN51-C1", "CDG50-C1", "CDG52-P4", "FRA56-P7", "FRA60-P2", "AMS1-C1", "AMS58-P4",
    "MAD53-C1", "MXP63-P1", "ARN54-C1", "WAW51-P3", "DUB2-C1", "ZRH55-P1", "NRT57-P2", "NRT12-C4",
    "ICN54-C2", "SIN2-C1", "SIN52-C3", "HKG62-C1", "BOM78-P4", "SYD1-C2", "MEL50-C2", "JNB50-C1",
];

/// AWS regions, weighted towards the busy ones.
pub const REGIONS: &[(u32, &str)] = &[
    (30, "us-east-1"),
    (12, "us-east-2"),
    (15, "us-west-2"),
    (15, "eu-west-1"),
    (10, "eu-central-1"),
    (5, "eu-west-3"),
    (5, "ap-southeast-2"),
    (4, "ap-northeast-1"),
    (2, "sa-east-1"),
    (2, "ca-central-1"),
];

/// Account ids of a small organisation (AWS documentation-style numbers).
pub const ACCOUNTS: &[&str] = &[
    "123456789012",
    "111122223333",
    "444455556666",
    "777788889999",
    "210987654321",
];

/// Appends an address: mostly public IPv4, some IPv6 (`v6_percent`).
pub fn client_ip(rng: &mut Rng, out: &mut String, v6_percent: u64) {
    if rng.chance(v6_percent) {
        ipv6(rng, out);
    } else {
        public_ipv4(rng, out);
    }
}

/// A public-looking IPv4 address. Includes the documentation ranges and a spread of
/// other first octets so the address population is large (as in real logs).
pub fn public_ipv4(rng: &mut Rng, out: &mut String) {
    const FIRST: &[u8] = &[
        3, 13, 18, 23, 31, 34, 35, 37, 41, 46, 52, 54, 62, 66, 72, 77, 78, 81, 82, 86, 88, 91, 94,
        95, 98, 104, 109, 151, 176, 178, 185, 188, 192, 193, 195, 198, 203, 212, 213, 217,
    ];
    let a = rng.pick(FIRST);
    let _ = write!(
        out,
        "{a}.{}.{}.{}",
        rng.below(256),
        rng.below(256),
        rng.range(1, 254)
    );
}

/// A private (RFC 1918) VPC address in `10.0.0.0/16` or `172.31.0.0/16`.
pub fn private_ipv4(rng: &mut Rng, out: &mut String) {
    if rng.chance(70) {
        let _ = write!(out, "10.0.{}.{}", rng.below(64), rng.range(4, 254));
    } else {
        let _ = write!(out, "172.31.{}.{}", rng.below(48), rng.range(4, 254));
    }
}

/// A global-unicast IPv6 address, sometimes in compressed form (`::`), as logs print.
pub fn ipv6(rng: &mut Rng, out: &mut String) {
    const PREFIXES: &[&str] = &[
        "2001:db8",
        "2a01:e0a",
        "2a02:8108",
        "2600:1700",
        "2607:fb90",
        "2804:14c",
        "2406:da14",
    ];
    out.push_str(rng.pick(PREFIXES));
    if rng.chance(40) {
        let _ = write!(out, ":{:x}::{:x}", rng.below(0x10000), rng.range(1, 0xffff));
    } else {
        for _ in 0..6 {
            let _ = write!(out, ":{:x}", rng.below(0x10000));
        }
    }
}

/// A uniformly random RFC 4122 version-4 style UUID.
pub fn uuid(rng: &mut Rng, out: &mut String) {
    rng.hex(out, 8);
    out.push('-');
    rng.hex(out, 4);
    out.push_str("-4");
    rng.hex(out, 3);
    out.push('-');
    out.push(char::from(rng.pick(b"89ab")));
    rng.hex(out, 3);
    out.push('-');
    rng.hex(out, 12);
}

/// A presigned S3 query string (SigV4), with a fake access key and signature.
pub fn presigned_query(rng: &mut Rng, out: &mut String, date: &str) {
    let _ = write!(
        out,
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F{}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={}T{:02}{:02}00Z&X-Amz-Expires={}&X-Amz-SignedHeaders=host",
        date.replace('-', ""),
        date.replace('-', ""),
        rng.below(24),
        rng.below(60),
        rng.pick(&[300u32, 900, 3600, 86400, 604800]),
    );
    if rng.chance(30) {
        // Temporary credentials also carry a session token (redacted as well).
        out.push_str("&X-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLE");
        rng.base64ish(out, 40);
    }
    out.push_str("&X-Amz-Signature=");
    rng.hex(out, 64);
}

/// Percent-encodes the characters CloudFront encodes in its log fields (space and the
/// few bytes that would break the tab-separated layout).
pub fn cloudfront_encode(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '"' => out.push_str("%22"),
            '\\' => out.push_str("%5C"),
            '\t' => out.push_str("%09"),
            c => out.push(c),
        }
    }
}
