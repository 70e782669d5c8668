//! Amazon Redshift connection log (`connectionlog`): `|`-separated, blank-padded values,
//! `recordtime` as `Fri, 15 Mar 2024 00:00:00:123`.

use std::fmt::Write;

use time::OffsetDateTime;

use super::owned;
use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

const EVENTS: &[(u32, &str)] = &[
    (40, "authenticated"),
    (35, "initiating session"),
    (20, "disconnecting session"),
    (5, "authentication failure"),
];

/// Appends one Redshift connection log line.
pub fn record(rng: &mut Rng, clock: &mut Clock, out: &mut String) {
    clock.tick(rng, 200_000);
    let t = OffsetDateTime::from_unix_timestamp(clock.epoch_secs())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let event = rng.weighted(EVENTS);
    let ip = owned(|s| pools::private_ipv4(rng, s));
    let user = rng.pick(&["analyst", "etl", "admin", "looker"]);
    let duration = if event == "disconnecting session" {
        rng.range(1_000_000, 4_000_000_000)
    } else {
        0
    };
    let _ = writeln!(
        out,
        "{event} |{}, {} {} {} {:02}:{:02}:{:02}:{:03}|::ffff:{ip} |{} |{} |dev |{user} |password |{duration} |TLSv1.3 |TLS_AES_256_GCM_SHA384 |0 | | | |psql |Linux 5.10.0 amd64 |psql 15.4 | |0 |{} | |",
        &format!("{:?}", t.weekday())[..3],
        t.day(),
        &format!("{:?}", t.month())[..3],
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        clock.micros().rem_euclid(1_000_000) / 1000,
        rng.range(32768, 65535),
        rng.range(1_073_741_824, 1_073_999_999),
        rng.hex_string(32)
    );
}
