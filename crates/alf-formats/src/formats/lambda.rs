//! AWS Lambda function logs (log group `/aws/lambda/<function>`), in every shape
//! Lambda writes them:
//!
//! * platform lines: `START RequestId: <id> Version: <v>`, `END RequestId: <id>`,
//!   `REPORT RequestId: <id>\tDuration: 3.41 ms\tBilled Duration: 4 ms\tMemory Size:
//!   128 MB\tMax Memory Used: 71 MB[\tInit Duration: 116.67 ms]` (an init duration means
//!   a cold start), `INIT_START Runtime Version: ...`;
//! * the text format of the managed runtimes: Node.js `<time>\t<request id>\t<LEVEL>\t
//!   <message>`, Python `[LEVEL]\t<time>\t<request id>\t<message>`;
//! * the JSON log format: `{"timestamp","level","message","requestId",...}` and the
//!   platform events `{"time","type":"platform.report","record":{...}}`.
//!
//! ECS: `faas.name` (from the group), `faas.version`, `faas.execution` (request id),
//! `faas.coldstart`, `log.level` lower-case, `message`, `event.duration` (ns); the
//! REPORT figures under `aws.lambda.*`.

use serde_json::Value as J;

use crate::event::Event;
use crate::formats::cloudwatch_inner::level;
use crate::util;

const PLATFORM_PREFIXES: &[&str] = &[
    "START RequestId: ",
    "END RequestId: ",
    "REPORT RequestId: ",
    "INIT_START ",
    "INIT_REPORT ",
    "EXTENSION\t",
    "TELEMETRY\t",
];

/// A platform line of the text log format.
pub(crate) fn is_platform_line(text: &str) -> bool {
    PLATFORM_PREFIXES.iter().any(|p| text.starts_with(p))
}

/// Lambda's log stream names: `2024/05/01/[$LATEST]0123abcd...`.
pub(crate) fn is_lambda_stream(stream: &str) -> bool {
    let b = stream.as_bytes();
    b.len() > 12 && b[4] == b'/' && b[7] == b'/' && b[10] == b'/' && b[11] == b'['
}

/// A JSON-format Lambda log: an application record with `requestId` and `level`, or a
/// `platform.*` event.
pub(crate) fn is_lambda_json(m: &serde_json::Map<String, J>) -> bool {
    (m.contains_key("requestId") && m.contains_key("level") && m.contains_key("timestamp"))
        || m.get("type")
            .and_then(J::as_str)
            .is_some_and(|t| t.starts_with("platform."))
}

/// Maps one Lambda message; never fails (text that matches no layout is the message).
pub(crate) fn map(function: Option<&str>, text: &str, json: Option<J>) -> Event {
    let mut ev = Event::new();
    ev.set("cloud.service.name", "lambda");
    ev.set_opt("faas.name", function.map(str::to_owned));
    match json {
        Some(J::Object(m)) => map_json(&mut ev, text, m),
        _ => map_text(&mut ev, text),
    }
    ev
}

fn map_text(ev: &mut Event, text: &str) {
    if let Some(rest) = text.strip_prefix("START RequestId: ") {
        let (id, version) = match rest.split_once(" Version: ") {
            Some((id, v)) => (id, Some(v.trim())),
            None => (rest.trim(), None),
        };
        ev.set("faas.execution", id.trim().to_owned());
        ev.set_str("faas.version", version);
        ev.set("event.action", "start");
        ev.set("message", text.to_owned());
        return;
    }
    if let Some(rest) = text.strip_prefix("END RequestId: ") {
        ev.set("faas.execution", rest.trim().to_owned());
        ev.set("event.action", "end");
        ev.set("message", text.to_owned());
        return;
    }
    if let Some(rest) = text.strip_prefix("REPORT RequestId: ") {
        map_report(ev, rest);
        ev.set("message", text.to_owned());
        return;
    }
    if let Some(rest) = text.strip_prefix("INIT_START ") {
        ev.set("event.action", "init_start");
        ev.set("faas.coldstart", true);
        for part in rest.split('\t') {
            if let Some(v) = part.strip_prefix("Runtime Version: ") {
                ev.set("aws.lambda.runtime_version", v.trim().to_owned());
            } else if let Some(v) = part.strip_prefix("Runtime Version ARN: ") {
                ev.set("aws.lambda.runtime_version_arn", v.trim().to_owned());
            }
        }
        ev.set("message", text.to_owned());
        return;
    }
    let parts: Vec<&str> = text.splitn(4, '\t').collect();
    if parts.len() == 4 {
        // Node.js: <time>\t<request id>\t<LEVEL>\t<message>
        if let Some(ts) = util::iso_timestamp(parts[0]) {
            ev.set("@timestamp", ts);
            ev.set("faas.execution", parts[1].to_owned());
            ev.set("log.level", level(parts[2]));
            ev.set("message", parts[3].to_owned());
            return;
        }
        // Python: [LEVEL]\t<time>\t<request id>\t<message>
        if parts[0].starts_with('[')
            && parts[0].ends_with(']')
            && let Some(ts) = util::iso_timestamp(parts[1])
        {
            ev.set("@timestamp", ts);
            ev.set("log.level", level(parts[0]));
            ev.set("faas.execution", parts[2].to_owned());
            ev.set("message", parts[3].to_owned());
            return;
        }
    }
    // Runtime errors and timeouts: `<time> <request id> Task timed out after 3.00 seconds`.
    let mut words = text.splitn(3, ' ');
    if let (Some(t), Some(id), Some(rest)) = (words.next(), words.next(), words.next())
        && let Some(ts) = util::iso_timestamp(t)
        && id.len() == 36
    {
        ev.set("@timestamp", ts);
        ev.set("faas.execution", id.to_owned());
        if rest.starts_with("Task timed out") {
            ev.set("event.action", "timeout");
            ev.set("event.outcome", "failure");
            ev.set("log.level", "error");
        }
        ev.set("message", rest.to_owned());
        return;
    }
    ev.set("message", text.to_owned());
}

/// The tab-separated figures of a REPORT line (after `REPORT RequestId: `).
fn map_report(ev: &mut Event, rest: &str) {
    ev.set("event.action", "report");
    let mut parts = rest.split('\t');
    if let Some(id) = parts.next() {
        ev.set("faas.execution", id.trim().to_owned());
    }
    let mut coldstart = false;
    for part in parts {
        let Some((name, value)) = part.split_once(": ") else {
            continue;
        };
        let number = value
            .split(' ')
            .next()
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n >= 0.0);
        match (name.trim(), number) {
            ("Duration", Some(ms)) => {
                ev.set("aws.lambda.duration_ms", ms);
                ev.set("event.duration", (ms * 1_000_000.0).round() as u64);
            }
            ("Billed Duration", Some(ms)) => ev.set("aws.lambda.billed_duration_ms", ms),
            ("Memory Size", Some(mb)) => ev.set("aws.lambda.memory_size_mb", mb as u64),
            ("Max Memory Used", Some(mb)) => ev.set("aws.lambda.max_memory_used_mb", mb as u64),
            ("Init Duration", Some(ms)) => {
                ev.set("aws.lambda.init_duration_ms", ms);
                coldstart = true;
            }
            ("Restore Duration", Some(ms)) => ev.set("aws.lambda.restore_duration_ms", ms),
            ("Status", _) => {
                ev.set("aws.lambda.status", value.trim().to_owned());
                ev.set("event.outcome", "failure");
            }
            ("Error Type", _) => ev.set("error.type", value.trim().to_owned()),
            _ => {}
        }
    }
    ev.set("faas.coldstart", coldstart);
}

fn map_json(ev: &mut Event, text: &str, mut m: serde_json::Map<String, J>) {
    if let Some(kind) = m.get("type").and_then(J::as_str).map(str::to_owned)
        && kind.starts_with("platform.")
    {
        let time = m
            .get("time")
            .and_then(J::as_str)
            .and_then(util::iso_timestamp);
        ev.set_opt("@timestamp", time);
        ev.set("event.action", kind.clone());
        let record = m.get("record");
        let text_at = |path: &[&str]| -> Option<String> {
            let mut v = record?;
            for p in path {
                v = v.get(*p)?;
            }
            v.as_str().map(str::to_owned)
        };
        ev.set_opt("faas.execution", text_at(&["requestId"]));
        ev.set_opt("faas.version", text_at(&["version"]));
        if let Some(metrics) = record.and_then(|r| r.get("metrics")) {
            let num = |k: &str| metrics.get(k).and_then(J::as_f64).filter(|n| *n >= 0.0);
            if let Some(ms) = num("durationMs") {
                ev.set("aws.lambda.duration_ms", ms);
                ev.set("event.duration", (ms * 1_000_000.0).round() as u64);
            }
            ev.set_opt("aws.lambda.billed_duration_ms", num("billedDurationMs"));
            ev.set_opt(
                "aws.lambda.memory_size_mb",
                num("memorySizeMB").map(|n| n as u64),
            );
            ev.set_opt(
                "aws.lambda.max_memory_used_mb",
                num("maxMemoryUsedMB").map(|n| n as u64),
            );
            let init = num("initDurationMs");
            ev.set_opt("aws.lambda.init_duration_ms", init);
            ev.set("faas.coldstart", init.is_some());
        }
        if kind == "platform.initStart" {
            ev.set("faas.coldstart", true);
        }
        if let Some(status) = text_at(&["status"]) {
            util::set_outcome(ev, status == "success");
            ev.set("aws.lambda.status", status);
        }
        ev.set("message", text.to_owned());
        if let Some(record) = m.remove("record") {
            ev.set("aws.lambda.record", record);
        }
        return;
    }
    let take = |m: &mut serde_json::Map<String, J>, k: &str| match m.remove(k) {
        Some(J::String(s)) => Some(s),
        Some(J::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let time = take(&mut m, "timestamp").and_then(|t| util::iso_timestamp(&t));
    ev.set_opt("@timestamp", time);
    if let Some(l) = take(&mut m, "level") {
        ev.set("log.level", level(&l));
    }
    ev.set_opt("faas.execution", take(&mut m, "requestId"));
    match take(&mut m, "message") {
        Some(msg) => ev.set("message", msg),
        None => ev.set("message", text.to_owned()),
    }
    if let Some(logger) = take(&mut m, "logger") {
        ev.set("log.logger", logger);
    }
    if !m.is_empty() {
        ev.set("aws.lambda.fields", J::Object(m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::assert_fields;

    fn run(function: Option<&str>, text: &str) -> J {
        let json = serde_json::from_str(text).ok();
        map(function, text, json).to_json()
    }

    #[test]
    fn report_line_with_init_duration_is_a_cold_start() {
        let e = run(
            Some("my-function"),
            "REPORT RequestId: 3604209a-e9a3-11e6-939a-754dd98c7be3\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 18 MB\tInit Duration: 130.24 ms\t",
        );
        assert_fields(
            &e,
            json!({
                "faas": {
                    "name": "my-function",
                    "execution": "3604209a-e9a3-11e6-939a-754dd98c7be3",
                    "coldstart": true,
                },
                "aws": {
                    "lambda": {
                        "billed_duration_ms": 13.0,
                        "memory_size_mb": 128,
                        "max_memory_used_mb": 18,
                        "init_duration_ms": 130.24,
                    },
                },
                "event": {"duration": 12_340_000},
            }),
        );
        let warm = run(
            None,
            "REPORT RequestId: 3604209a-e9a3-11e6-939a-754dd98c7be3\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB\tMax Memory Used: 18 MB",
        );
        assert_eq!(warm["faas"]["coldstart"], false);
    }

    #[test]
    fn start_end_and_text_formats() {
        let e = run(
            None,
            "START RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95 Version: $LATEST",
        );
        assert_eq!(e["faas"]["version"], "$LATEST");
        assert_eq!(e["event"]["action"], "start");
        let e = run(
            None,
            "2024-05-01T12:00:00.123Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tERROR\tInvoke Error",
        );
        assert_eq!(e["log"]["level"], "error");
        assert_eq!(e["message"], "Invoke Error");
        assert_eq!(e["@timestamp"], "2024-05-01T12:00:00.123Z");
        let e = run(
            None,
            "[WARNING]\t2024-05-01T12:00:00.123Z\t8f507cfc-xmpl-4697-b07a-ac58fc914c95\tdisk low",
        );
        assert_eq!(e["log"]["level"], "warning");
        assert_eq!(
            e["faas"]["execution"],
            "8f507cfc-xmpl-4697-b07a-ac58fc914c95"
        );
        let e = run(
            None,
            "2024-05-01T12:00:03.000Z 8f507cfc-xmpl-4697-b07a-ac58fc914c95 Task timed out after 3.00 seconds",
        );
        assert_eq!(e["event"]["action"], "timeout");
    }

    #[test]
    fn json_format_application_and_platform_records() {
        let e = run(
            Some("fn"),
            r#"{"timestamp":"2024-05-01T12:00:00.500Z","level":"INFO","message":"order placed","requestId":"79b4f56e-95b1-4643-9700-2807f4e68189","orderId":42}"#,
        );
        assert_eq!(e["log"]["level"], "info");
        assert_eq!(e["message"], "order placed");
        assert_eq!(e["aws"]["lambda"]["fields"]["orderId"], 42);
        let e = run(
            Some("fn"),
            r#"{"time":"2024-05-01T12:00:01.000Z","type":"platform.report","record":{"requestId":"79b4f56e-95b1-4643-9700-2807f4e68189","metrics":{"durationMs":25.3,"billedDurationMs":26,"memorySizeMB":512,"maxMemoryUsedMB":80,"initDurationMs":301.2},"status":"success"}}"#,
        );
        assert_eq!(e["faas"]["coldstart"], true);
        assert_eq!(e["event"]["outcome"], "success");
        assert_eq!(e["aws"]["lambda"]["memory_size_mb"], 512);
    }
}
