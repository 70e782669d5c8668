//! Record timestamps: a clock that advances a little per record, printed in the
//! layouts AWS services use.

use std::fmt::Write;

use time::OffsetDateTime;

use crate::rng::Rng;

/// 2024-03-15T00:00:00Z: a fixed start so generated files are reproducible.
pub const START_EPOCH_SECS: i64 = 1_710_460_800;

/// A monotonic clock in microseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct Clock {
    micros: i64,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Clock {
    pub fn new() -> Self {
        Clock {
            micros: START_EPOCH_SECS * 1_000_000,
        }
    }

    /// Advances by a random gap of up to `max_gap_micros` (busy logs: a few ms).
    pub fn tick(&mut self, rng: &mut Rng, max_gap_micros: u64) {
        self.micros += rng.below(max_gap_micros + 1) as i64;
    }

    /// The same clock `micros` earlier (request start times before log times).
    pub fn minus(&self, micros: i64) -> Clock {
        Clock {
            micros: self.micros - micros,
        }
    }

    pub fn epoch_secs(&self) -> i64 {
        self.micros.div_euclid(1_000_000)
    }

    pub fn epoch_millis(&self) -> i64 {
        self.micros.div_euclid(1_000)
    }

    pub fn micros(&self) -> i64 {
        self.micros
    }

    fn utc(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.epoch_secs()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn sub_micros(&self) -> i64 {
        self.micros.rem_euclid(1_000_000)
    }

    /// `2024-03-15`
    pub fn date(&self, out: &mut String) {
        let t = self.utc();
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}",
            t.year(),
            u8::from(t.month()),
            t.day()
        );
    }

    /// `00:00:01`
    pub fn time(&self, out: &mut String) {
        let t = self.utc();
        let _ = write!(out, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    }

    /// `2024-03-15T00:00:01Z`
    pub fn iso_secs(&self, out: &mut String) {
        self.date(out);
        out.push('T');
        self.time(out);
        out.push('Z');
    }

    /// `2024-03-15T00:00:01.123Z`
    pub fn iso_millis(&self, out: &mut String) {
        self.date(out);
        out.push('T');
        self.time(out);
        let _ = write!(out, ".{:03}Z", self.sub_micros() / 1000);
    }

    /// `2024-03-15T00:00:01.123456Z` (ALB)
    pub fn iso_micros(&self, out: &mut String) {
        self.date(out);
        out.push('T');
        self.time(out);
        let _ = write!(out, ".{:06}Z", self.sub_micros());
    }

    /// `2024-03-15T00:00:01.123456+0000` (Network Firewall / Suricata)
    pub fn suricata(&self, out: &mut String) {
        self.date(out);
        out.push('T');
        self.time(out);
        let _ = write!(out, ".{:06}+0000", self.sub_micros());
    }

    /// `[15/Mar/2024:00:00:01 +0000]` (S3 server access logs)
    pub fn clf(&self, out: &mut String) {
        let t = self.utc();
        let month = MONTHS[usize::from(u8::from(t.month())).saturating_sub(1) % 12];
        let _ = write!(
            out,
            "[{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000]",
            t.day(),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        );
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        let mut c = Clock::new();
        c.micros += 3_723_004_567; // +1h 2m 3.004567s
        let mut s = String::new();
        c.iso_micros(&mut s);
        assert_eq!(s, "2024-03-15T01:02:03.004567Z");
        s.clear();
        c.clf(&mut s);
        assert_eq!(s, "[15/Mar/2024:01:02:03 +0000]");
        s.clear();
        c.suricata(&mut s);
        assert_eq!(s, "2024-03-15T01:02:03.004567+0000");
        s.clear();
        c.iso_millis(&mut s);
        assert_eq!(s, "2024-03-15T01:02:03.004Z");
        assert_eq!(c.epoch_secs(), START_EPOCH_SECS + 3723);
    }
}
