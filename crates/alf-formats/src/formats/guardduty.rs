//! Amazon GuardDuty findings as exported to S3: JSON Lines (one finding per line, the
//! S3 export's layout), a JSON array of findings, a `{"findings":[...]}` wrapper (the
//! API's shape), or EventBridge events (`"detail-type": "GuardDuty Finding"`).
//!
//! A finding is an alert (`event.kind: alert`). The finding type
//! `ThreatPurpose:ResourceTypeAffected/ThreatFamilyName.DetectionMechanism!Artifact`
//! names the rule (`rule.name`), its purpose is `rule.category`. The observed activity
//! (`service.action.actionType`: `NETWORK_CONNECTION`, `PORT_PROBE`, `AWS_API_CALL`...)
//! is `event.action`. Network endpoints follow the connection direction: the side that
//! opened the connection is `source`, as ECS defines it. The whole finding is also kept
//! under `aws.guardduty.*` with snake_case keys.

use serde_json::Value as J;

use crate::driver::{LineContext, RecordError};
use crate::event::{Event, Value};
use crate::readers::json_records::{
    JsonMap, snake_case, snake_keys, string_list, take_object, take_string, take_string_into,
    take_strings_into,
};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader, has_json_keys};
use crate::util;

/// GuardDuty findings exported to S3: one per line, or inside `{"findings": [...]}`.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "guardduty",
    dataset: "aws.guardduty",
    example_key: "AWSLogs/123456789012/GuardDuty/us-east-1/2024/03/15/0a1b2c3d-4e5f-6789-abcd-ef0123456789.jsonl.gz",
    key_clues: &[KeyClue {
        rank: 40,
        layout: "AWSLogs/<account>/GuardDuty/",
        matches: |k| k.key.contains("/GuardDuty/"),
    }],
    content_clues: &[ContentClue {
        rank: 140,
        what: "GuardDuty finding",
        first_line: FirstLine::Json,
        matches: |line| has_json_keys(line, &["schemaVersion", "severity", "service"]),
    }],
    skip: None,
    options: &[],
    reader: Reader::JsonRecords {
        wrappers: &["findings", "Findings"],
        map: map_finding,
    },
};

/// The parts of a finding type such as `Backdoor:EC2/C&CActivity.B!DNS`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FindingType<'a> {
    threat_purpose: &'a str,
    resource_type: &'a str,
    threat_family: &'a str,
    detection_mechanism: Option<&'a str>,
    artifact: Option<&'a str>,
}

fn split_type(t: &str) -> Option<FindingType<'_>> {
    let (threat_purpose, rest) = t.split_once(':')?;
    let (resource_type, rest) = rest.split_once('/')?;
    let (name, artifact) = util::split_first(rest, '!');
    let (threat_family, detection_mechanism) = util::split_first(name, '.');
    Some(FindingType {
        threat_purpose,
        resource_type,
        threat_family,
        detection_mechanism,
        artifact,
    })
}

/// GuardDuty's severity bands: Low 1.0-3.9, Medium 4.0-6.9, High 7.0-8.9,
/// Critical 9.0-10.0.
fn severity_label(severity: f64) -> &'static str {
    if severity >= 9.0 {
        "Critical"
    } else if severity >= 7.0 {
        "High"
    } else if severity >= 4.0 {
        "Medium"
    } else {
        "Low"
    }
}

pub(crate) fn map_finding(cx: &LineContext<'_>, mut f: JsonMap) -> Result<Event, RecordError> {
    if f.get("detail-type").and_then(J::as_str) == Some("GuardDuty Finding")
        && let Some(detail) = take_object(&mut f, "detail")
    {
        f = detail;
    }
    let mut ev = Event::new();
    ev.set("event.kind", "alert");
    util::set_category(&mut ev, &["intrusion_detection"]);
    ev.set("cloud.service.name", "guardduty");

    let updated = take_string(&mut f, "updatedAt");
    let created = take_string(&mut f, "createdAt");
    let ts = |field: &'static str, v: &Option<String>| -> Result<Option<String>, RecordError> {
        match v {
            Some(s) => util::iso_timestamp(s)
                .map(Some)
                .ok_or_else(|| RecordError::invalid(field, s)),
            None => Ok(None),
        }
    };
    let updated = ts("updatedAt", &updated)?;
    let created = ts("createdAt", &created)?;
    // The last update is when the finding (and its count) was last observed.
    ev.set_opt("@timestamp", updated.clone().or_else(|| created.clone()));
    ev.set_opt("event.created", created.clone());
    ev.set_opt("aws.guardduty.created_at", created);
    ev.set_opt("aws.guardduty.updated_at", updated);

    take_strings_into(
        &mut f,
        &mut ev,
        &[
            ("event.id", "id"),
            ("aws.guardduty.arn", "arn"),
            ("cloud.account.id", "accountId"),
            ("cloud.region", "region"),
            ("aws.guardduty.partition", "partition"),
            ("aws.guardduty.schema_version", "schemaVersion"),
        ],
    );

    if let Some(t) = take_string(&mut f, "type") {
        if let Some(parts) = split_type(&t) {
            ev.set("rule.category", parts.threat_purpose.to_owned());
            ev.set(
                "rule.ruleset",
                format!("{}:{}", parts.threat_purpose, parts.resource_type),
            );
            ev.set(
                "aws.guardduty.finding_type.threat_purpose",
                parts.threat_purpose.to_owned(),
            );
            ev.set(
                "aws.guardduty.finding_type.resource_type",
                parts.resource_type.to_owned(),
            );
            ev.set(
                "aws.guardduty.finding_type.threat_family",
                parts.threat_family.to_owned(),
            );
            ev.set_str(
                "aws.guardduty.finding_type.detection_mechanism",
                parts.detection_mechanism,
            );
            ev.set_str("aws.guardduty.finding_type.artifact", parts.artifact);
        }
        ev.set("rule.name", t.clone());
        ev.set("aws.guardduty.type", t);
    }
    take_string_into(&mut f, "title", &mut ev, &["aws.guardduty.title"]);
    take_string_into(
        &mut f,
        "description",
        &mut ev,
        &["message", "aws.guardduty.description"],
    );
    if let Some(sev) = f.remove("severity").and_then(|v| number(&v)) {
        // ECS `event.severity` is an integer; flooring keeps the value in its band.
        ev.set("event.severity", sev.floor() as i64);
        ev.set("aws.guardduty.severity.code", sev);
        ev.set("aws.guardduty.severity.value", severity_label(sev));
    }

    let mut users = UserCandidates::default();
    if let Some(resource) = take_object(&mut f, "resource") {
        map_resource(&mut ev, &resource, &mut users);
        ev.set("aws.guardduty.resource", snake_keys(J::Object(resource)));
    }
    let mut types = vec![Value::Static("info")];
    if let Some(service) = take_object(&mut f, "service") {
        if map_service(cx, &mut ev, &service) {
            types = vec![Value::Static("denied")];
        }
        ev.set("aws.guardduty.service", snake_keys(J::Object(service)));
    }
    ev.set("event.type", Value::Arr(types));
    users.apply(&mut ev);

    for (key, value) in f {
        if !value.is_null() {
            ev.set_dyn("aws.guardduty", &snake_case(&key), snake_keys(value));
        }
    }
    Ok(ev)
}

fn number(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn str_at<'a>(m: &'a JsonMap, path: &[&str]) -> Option<&'a str> {
    json_at(m, path)
        .and_then(J::as_str)
        .filter(|s| !s.is_empty())
}

fn json_at<'a>(m: &'a JsonMap, path: &[&str]) -> Option<&'a J> {
    let (first, rest) = path.split_first()?;
    let mut v = m.get(*first)?;
    for key in rest {
        v = v.get(key)?;
    }
    Some(v)
}

fn uint_at(m: &JsonMap, path: &[&str]) -> Option<u64> {
    match json_at(m, path)? {
        J::Number(n) => n.as_u64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The identities a finding names, most specific first: the IAM principal whose
/// credentials acted, then a Kubernetes user, then a database user.
#[derive(Debug, Default)]
struct UserCandidates {
    name: Option<String>,
    id: Option<String>,
}

impl UserCandidates {
    fn offer(&mut self, ev: &mut Event, name: Option<&str>, id: Option<&str>) {
        if let Some(n) = name {
            ev.push_unique("related.user", n.to_owned());
            if self.name.is_none() {
                self.name = Some(n.to_owned());
            }
        }
        if self.id.is_none() {
            self.id = id.map(str::to_owned);
        }
    }

    fn apply(self, ev: &mut Event) {
        ev.set_opt("user.name", self.name);
        ev.set_opt("user.id", self.id);
    }
}

fn map_resource(ev: &mut Event, r: &JsonMap, users: &mut UserCandidates) {
    if let Some(J::Object(key)) = r.get("accessKeyDetails") {
        users.offer(
            ev,
            str_at(key, &["userName"]),
            str_at(key, &["principalId"]),
        );
    }
    if let Some(J::Object(k8s)) = r.get("kubernetesDetails") {
        ev.set("orchestrator.type", "kubernetes");
        if let Some(J::Object(u)) = k8s.get("kubernetesUserDetails") {
            users.offer(ev, str_at(u, &["username"]), str_at(u, &["uid"]));
            ev.set_opt("user.group.name", string_list(u.get("groups")));
        }
        if let Some(J::Object(w)) = k8s.get("kubernetesWorkloadDetails") {
            ev.set_str("orchestrator.namespace", str_at(w, &["namespace"]));
            ev.set_str("orchestrator.resource.name", str_at(w, &["name"]));
            ev.set_str("orchestrator.resource.type", str_at(w, &["type"]));
        }
    }
    if let Some(J::Object(eks)) = r.get("eksClusterDetails") {
        ev.set_str("orchestrator.cluster.name", str_at(eks, &["name"]));
    }
    if let Some(J::Object(db)) = r.get("rdsDbUserDetails") {
        users.offer(ev, str_at(db, &["user"]), None);
    }
    if let Some(J::Object(i)) = r.get("instanceDetails") {
        let id = str_at(i, &["instanceId"]);
        ev.set_str("cloud.instance.id", id);
        ev.set_str("host.id", id);
        ev.set_str("cloud.machine.type", str_at(i, &["instanceType"]));
        ev.set_str("cloud.availability_zone", str_at(i, &["availabilityZone"]));
        if let Some(J::Array(tags)) = i.get("tags") {
            let name = tags.iter().find_map(|t| {
                (t.get("key")?.as_str()? == "Name")
                    .then(|| t.get("value")?.as_str())
                    .flatten()
            });
            ev.set_str("cloud.instance.name", name);
        }
        if let Some(J::Array(nics)) = i.get("networkInterfaces") {
            for nic in nics {
                let addrs = ["privateIpAddress", "publicIp"]
                    .iter()
                    .filter_map(|k| nic.get(*k).and_then(J::as_str));
                let v6 = nic
                    .get("ipv6Addresses")
                    .and_then(J::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(J::as_str);
                for ip in addrs.chain(v6).filter_map(util::canonical_ip) {
                    ev.push_unique("related.ip", ip);
                }
            }
        }
    }
    if let Some(J::Object(c)) = r.get("containerDetails") {
        ev.set_str("container.id", str_at(c, &["id"]));
        ev.set_str("container.name", str_at(c, &["name"]));
        ev.set_str("container.image.name", str_at(c, &["image"]));
    }
}

/// Maps `service`; returns whether GuardDuty reports the activity as blocked.
fn map_service(cx: &LineContext<'_>, ev: &mut Event, s: &JsonMap) -> bool {
    for (key, path) in [
        ("eventFirstSeen", "event.start"),
        ("eventLastSeen", "event.end"),
    ] {
        if let Some(t) = str_at(s, &[key]).and_then(util::iso_timestamp) {
            ev.set(path, t);
        }
    }
    let mut blocked = false;
    if let Some(J::Object(action)) = s.get("action") {
        blocked = map_action(cx, ev, action);
    }
    if !ev.contains("user_agent.original")
        && let Some(ua) = str_at(s, &["additionalInfo", "userAgent", "fullUserAgent"])
    {
        cx.enricher.user_agent(ev, ua);
    }
    if let Some(J::Object(p)) = json_at(s, &["runtimeDetails", "process"]) {
        ev.set_str("process.name", str_at(p, &["name"]));
        ev.set_str("process.executable", str_at(p, &["executablePath"]));
        ev.set_str("process.hash.sha256", str_at(p, &["executableSha256"]));
        ev.set_str("process.working_directory", str_at(p, &["pwd"]));
        ev.set_opt("process.pid", uint_at(p, &["pid"]));
        ev.set_str("process.user.name", str_at(p, &["user"]));
        if let Some(t) = str_at(p, &["startTime"]).and_then(util::iso_timestamp) {
            ev.set("process.start", t);
        }
        if let Some(h) = str_at(p, &["executableSha256"]) {
            ev.push_unique("related.hash", h.to_owned());
        }
    }
    // Malware Protection scans list the hashes of the files they flagged.
    if let Some(J::Array(threats)) = json_at(
        s,
        &[
            "ebsVolumeScanDetails",
            "scanDetections",
            "threatDetectedByName",
            "threatNames",
        ],
    ) {
        for threat in threats {
            let paths = threat.get("filePaths").and_then(J::as_array);
            for file in paths.into_iter().flatten() {
                if let Some(h) = file.get("hash").and_then(J::as_str) {
                    ev.push_unique("related.hash", h.to_owned());
                }
            }
        }
    }
    blocked
}

/// Static ECS paths of one endpoint (`source` or `destination`).
struct Endpoint {
    ip: &'static str,
    address: &'static str,
    port: &'static str,
    country_name: &'static str,
    country_iso_code: &'static str,
    city_name: &'static str,
    location: &'static str,
    as_number: &'static str,
    as_organization: &'static str,
}

const SOURCE: Endpoint = Endpoint {
    ip: "source.ip",
    address: "source.address",
    port: "source.port",
    country_name: "source.geo.country_name",
    country_iso_code: "source.geo.country_iso_code",
    city_name: "source.geo.city_name",
    location: "source.geo.location",
    as_number: "source.as.number",
    as_organization: "source.as.organization.name",
};

const DESTINATION: Endpoint = Endpoint {
    ip: "destination.ip",
    address: "destination.address",
    port: "destination.port",
    country_name: "destination.geo.country_name",
    country_iso_code: "destination.geo.country_iso_code",
    city_name: "destination.geo.city_name",
    location: "destination.geo.location",
    as_number: "destination.as.number",
    as_organization: "destination.as.organization.name",
};

/// Sets an endpoint from GuardDuty `*IpDetails` (address, geo, AS) and a port.
fn set_endpoint(ev: &mut Event, side: &Endpoint, ip: Option<&J>, port: Option<u64>) {
    let details = ip.and_then(J::as_object);
    if let Some(d) = details {
        let addr = str_at(d, &["ipAddressV4"]).or_else(|| str_at(d, &["ipAddressV6"]));
        if let Some(ip) = addr.and_then(util::canonical_ip) {
            ev.set(side.address, ip.clone());
            ev.set(side.ip, ip.clone());
            ev.push_unique("related.ip", ip);
        }
        ev.set_str(side.country_name, str_at(d, &["country", "countryName"]));
        ev.set_str(
            side.country_iso_code,
            str_at(d, &["country", "countryCode"]),
        );
        ev.set_str(side.city_name, str_at(d, &["city", "cityName"]));
        if let (Some(lat), Some(lon)) = (
            json_at(d, &["geoLocation", "lat"]).and_then(number),
            json_at(d, &["geoLocation", "lon"]).and_then(number),
        ) {
            ev.set(side.location, serde_json::json!({ "lat": lat, "lon": lon }));
        }
        // GuardDuty writes ASNs as strings and `-1` when unknown.
        if let Some(asn) = str_at(d, &["organization", "asn"]).and_then(util::uint) {
            ev.set(side.as_number, asn);
        }
        ev.set_str(side.as_organization, str_at(d, &["organization", "asnOrg"]));
    }
    ev.set_opt(side.port, port.filter(|p| *p <= u64::from(u16::MAX)));
}

/// Maps `service.action`; returns whether the activity was blocked.
fn map_action(cx: &LineContext<'_>, ev: &mut Event, action: &JsonMap) -> bool {
    ev.set_str("event.action", str_at(action, &["actionType"]));
    let mut blocked = false;
    let is_true = |v: Option<&J>| v.and_then(J::as_bool) == Some(true);
    let transport = |ev: &mut Event, p: Option<&str>| {
        if let Some(p) = p.filter(|p| !p.eq_ignore_ascii_case("unknown")) {
            ev.set("network.transport", p.to_ascii_lowercase());
        }
    };

    if let Some(J::Object(n)) = action.get("networkConnectionAction") {
        blocked |= is_true(n.get("blocked"));
        transport(ev, str_at(n, &["protocol"]));
        let direction = str_at(n, &["connectionDirection"]).map(str::to_ascii_lowercase);
        let local_port = uint_at(n, &["localPortDetails", "port"]);
        let remote_port = uint_at(n, &["remotePortDetails", "port"]);
        let (local, remote) = (n.get("localIpDetails"), n.get("remoteIpDetails"));
        // OUTBOUND: the resource opened the connection, so it is the source.
        if direction.as_deref() == Some("outbound") {
            set_endpoint(ev, &SOURCE, local, local_port);
            set_endpoint(ev, &DESTINATION, remote, remote_port);
        } else {
            set_endpoint(ev, &SOURCE, remote, remote_port);
            set_endpoint(ev, &DESTINATION, local, local_port);
        }
        if let Some(d) = direction {
            ev.set("network.direction", d);
        }
    }
    if let Some(J::Object(p)) = action.get("portProbeAction") {
        blocked |= is_true(p.get("blocked"));
        ev.set("network.direction", "inbound");
        let details = p.get("portProbeDetails").and_then(J::as_array);
        for (i, d) in details.into_iter().flatten().enumerate() {
            if i == 0 {
                set_endpoint(ev, &SOURCE, d.get("remoteIpDetails"), None);
                let port = d
                    .get("localPortDetails")
                    .and_then(|l| l.get("port"))
                    .and_then(J::as_u64);
                set_endpoint(ev, &DESTINATION, d.get("localIpDetails"), port);
            } else {
                for side in ["remoteIpDetails", "localIpDetails"] {
                    let ip = d
                        .get(side)
                        .and_then(|x| x.get("ipAddressV4").or_else(|| x.get("ipAddressV6")))
                        .and_then(J::as_str)
                        .and_then(util::canonical_ip);
                    if let Some(ip) = ip {
                        ev.push_unique("related.ip", ip);
                    }
                }
            }
        }
    }
    if let Some(J::Object(d)) = action.get("dnsRequestAction") {
        blocked |= is_true(d.get("blocked"));
        ev.set("network.protocol", "dns");
        transport(ev, str_at(d, &["protocol"]));
        if let Some(domain) = str_at(d, &["domain"]) {
            ev.set("dns.question.name", domain.to_owned());
            ev.push_unique("related.hosts", domain.to_owned());
        }
    }
    if let Some(J::Object(a)) = action.get("awsApiCallAction") {
        set_endpoint(ev, &SOURCE, a.get("remoteIpDetails"), None);
        if let Some(ua) = str_at(a, &["userAgent"]) {
            cx.enricher.user_agent(ev, ua);
        }
        ev.set_str("error.code", str_at(a, &["errorCode"]));
    }
    if let Some(J::Object(k)) = action.get("kubernetesApiCallAction") {
        set_endpoint(ev, &SOURCE, k.get("remoteIpDetails"), None);
        let source_ips = k
            .get("sourceIps")
            .or_else(|| k.get("sourceIPs"))
            .and_then(J::as_array);
        for ip in source_ips
            .into_iter()
            .flatten()
            .filter_map(J::as_str)
            .filter_map(util::canonical_ip)
        {
            if !ev.contains("source.ip") {
                ev.set("source.address", ip.clone());
                ev.set("source.ip", ip.clone());
            }
            ev.push_unique("related.ip", ip);
        }
        if let Some(ua) = str_at(k, &["userAgent"]) {
            cx.enricher.user_agent(ev, ua);
        }
        ev.set_opt("http.response.status_code", uint_at(k, &["statusCode"]));
        ev.set_str("url.original", str_at(k, &["requestUri"]));
    }
    if let Some(J::Object(r)) = action.get("rdsLoginAttemptAction") {
        set_endpoint(ev, &SOURCE, r.get("remoteIpDetails"), None);
    }
    blocked
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use std::io::BufReader;

    use super::{FindingType, severity_label, split_type};
    use crate::{Event, Format, ParseOptions, ParseStats, assert_error_contains, assert_fields};

    const SAMPLE: &str = include_str!("../../../../tests/samples/guardduty.log");

    fn run_reader(r: &mut dyn std::io::BufRead) -> (Vec<Event>, ParseStats) {
        let key = "AWSLogs/111122223333/GuardDuty/us-east-1/2024/05/01/3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f.jsonl.gz";
        let options = ParseOptions::default();
        crate::parse_object_for_test(Format::GuardDuty, r, "findings-bucket", key, &options)
    }

    fn run(text: &str) -> (Vec<Event>, ParseStats) {
        run_reader(&mut text.as_bytes())
    }

    /// The event of the sample finding whose type (`rule.name`) is `rule`.
    fn sample_finding(rule: &str) -> serde_json::Value {
        let (events, _) = run(SAMPLE);
        events
            .iter()
            .find(|e| e.get_str("rule.name") == Some(rule))
            .unwrap_or_else(|| panic!("no finding {rule}"))
            .to_json()
    }

    #[test]
    fn finding_types_split_into_their_parts() {
        assert_eq!(
            split_type("Backdoor:EC2/C&CActivity.B!DNS"),
            Some(FindingType {
                threat_purpose: "Backdoor",
                resource_type: "EC2",
                threat_family: "C&CActivity",
                detection_mechanism: Some("B"),
                artifact: Some("DNS"),
            })
        );
        let t = split_type("Recon:EC2/PortProbeUnprotectedPort").unwrap();
        assert_eq!(
            (t.threat_purpose, t.resource_type, t.threat_family),
            ("Recon", "EC2", "PortProbeUnprotectedPort")
        );
        assert_eq!((t.detection_mechanism, t.artifact), (None, None));
        let t = split_type("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS")
            .unwrap();
        assert_eq!(t.detection_mechanism, Some("OutsideAWS"));
        assert_eq!(split_type("NotAType"), None);
    }

    #[test]
    fn severity_bands() {
        assert_eq!(severity_label(1.0), "Low");
        assert_eq!(severity_label(3.9), "Low");
        assert_eq!(severity_label(4.0), "Medium");
        assert_eq!(severity_label(6.9), "Medium");
        assert_eq!(severity_label(7.0), "High");
        assert_eq!(severity_label(8.9), "High");
        assert_eq!(severity_label(9.0), "Critical");
    }

    #[test]
    fn sample_file_maps_every_finding() {
        let (events, stats) = run(SAMPLE);
        assert_eq!(stats.malformed, 0, "{events:?}");
        assert!(events.len() >= 9);
        assert_eq!(stats.records as usize, events.len());
        for e in &events {
            let j = e.to_json();
            assert_eq!(j["event"]["kind"], "alert");
            assert_eq!(j["event"]["dataset"], "aws.guardduty");
            assert_eq!(j["cloud"]["account"]["id"], "111122223333");
            assert!(j["@timestamp"].is_string());
            assert_eq!(j["event"]["id"].as_str().unwrap().len(), 32);
            assert!(j["rule"]["name"].is_string());
            assert!(j["message"].is_string());
        }
        let (tiny, _) = run_reader(&mut BufReader::with_capacity(16, SAMPLE.as_bytes()));
        assert_eq!(tiny, events);
    }

    #[test]
    fn port_probe_maps_prober_to_source() {
        let e = sample_finding("Recon:EC2/PortProbeUnprotectedPort");
        assert_fields(
            &e,
            json!({
                "event": {"action": "PORT_PROBE", "severity": 2},
                "rule": {"category": "Recon", "ruleset": "Recon:EC2"},
                "aws": {"guardduty": {"severity": {"value": "Low"}}},
                "source": {
                    "ip": "198.51.100.14",
                    "geo": {"country_name": "Netherlands"},
                    "as": {"number": 64500},
                },
                "destination": {"ip": "172.31.37.9", "port": 22},
                "cloud": {"instance": {"id": "i-0a1b2c3d4e5f67890", "name": "bastion-1"}},
            }),
        );
        let related = e["related"]["ip"].as_array().unwrap();
        assert!(related.contains(&"203.0.113.90".into()), "{related:?}");
        assert!(related.contains(&"172.31.37.9".into()));
        assert_eq!(
            e["aws"]["guardduty"]["service"]["action"]["port_probe_action"]["port_probe_details"]
                [0]["local_port_details"]["port_name"],
            "SSH"
        );
        assert_eq!(e["event"]["start"], "2024-05-01T06:12:09Z");
        assert_eq!(e["event"]["end"], "2024-05-01T09:40:51Z");
    }

    #[test]
    fn connection_direction_decides_source_and_destination() {
        let inbound = sample_finding("UnauthorizedAccess:EC2/SSHBruteForce");
        assert_fields(
            &inbound,
            json!({
                "network": {"direction": "inbound", "transport": "tcp"},
                "source": {"ip": "203.0.113.17", "port": 50214},
                "destination": {"ip": "172.31.37.9", "port": 22},
            }),
        );

        let outbound = sample_finding("CryptoCurrency:EC2/BitcoinTool.B");
        assert_fields(
            &outbound,
            json!({
                "network": {"direction": "outbound"},
                "source": {"ip": "172.31.40.21", "port": 41822},
                "destination": {
                    "ip": "192.0.2.200",
                    "port": 3333,
                    "geo": {"city_name": "Frankfurt am Main"},
                },
                "event": {"severity": 8},
                "aws": {
                    "guardduty": {
                        "severity": {"value": "High"},
                        "finding_type": {"detection_mechanism": "B"},
                    },
                },
            }),
        );
    }

    #[test]
    fn api_calls_dns_kubernetes_rds_and_malware() {
        let api = sample_finding("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        );
        assert_eq!(api["event"]["action"], "AWS_API_CALL");
        assert_eq!(api["source"]["ip"], "198.51.100.61");
        assert_eq!(api["user"]["name"], "app-server-role");
        assert_eq!(
            api["user"]["id"],
            "AROA6ON6E4XEAPPROLEID:i-0a1b2c3d4e5f67890"
        );
        assert_eq!(api["user_agent"]["name"], "Boto3");

        let dns = sample_finding("Trojan:EC2/BlackholeTraffic!DNS");
        assert_eq!(dns["dns"]["question"]["name"], "update.blackholed.example");
        assert_eq!(dns["network"]["transport"], "udp");
        assert_eq!(dns["event"]["type"][0], "denied");
        assert_eq!(dns["aws"]["guardduty"]["finding_type"]["artifact"], "DNS");

        let k8s = sample_finding("Discovery:Kubernetes/MaliciousIPCaller.Custom");
        assert_fields(
            &k8s,
            json!({
                "event": {"action": "KUBERNETES_API_CALL"},
                "source": {"ip": "203.0.113.44"},
                "user": {
                    "name": "system:serviceaccount:payments:ledger",
                    "group": {"name": {"0": "system:serviceaccounts"}},
                },
                "orchestrator": {"cluster": {"name": "prod-eks"}, "namespace": "payments"},
                "http": {"response": {"status_code": 403}},
            }),
        );

        let rds = sample_finding("CredentialAccess:RDS/AnomalousBehavior.FailedLogin",
        );
        assert_eq!(rds["event"]["action"], "RDS_LOGIN_ATTEMPT");
        assert_eq!(rds["user"]["name"], "admin");
        assert_eq!(rds["source"]["ip"], "192.0.2.55");

        let malware = sample_finding("Execution:EC2/MaliciousFile");
        assert!(malware["event"].get("action").is_none());
        assert_eq!(
            malware["related"]["hash"][0],
            "4d3ff1fd4bd2e1c3e7f3a0c2b1d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f50"
        );

        let runtime = sample_finding("Execution:Runtime/NewBinaryExecuted");
        assert_eq!(runtime["process"]["name"], "xmrig");
        assert_eq!(runtime["process"]["pid"], 21455);
        assert_eq!(
            runtime["container"]["id"],
            "0f9e8d7c6b5a4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d"
        );
    }

    #[test]
    fn wrappers_arrays_and_eventbridge() {
        let (events, stats) = run(r#"{"findings":[]}"#);
        assert!(events.is_empty());
        assert_eq!(stats.malformed, 0);

        let first = SAMPLE.lines().next().unwrap();
        let second = SAMPLE.lines().nth(1).unwrap();
        let (events, _) = run(&format!("{{\"findings\":[{first},{second}]}}"));
        assert_eq!(events.len(), 2);
        let (events, _) = run(&format!("[{first},\n{second}]"));
        assert_eq!(events.len(), 2);
        // An empty wrapper line among JSON lines produces nothing.
        let (events, _) = run(&format!("{first}\n{{\"findings\":[]}}\n{second}\n"));
        assert_eq!(events.len(), 2);

        let eb = format!(
            r#"{{"version":"0","id":"c8c4daa7-a20c-2f03-0070-b7393dd542ad","detail-type":"GuardDuty Finding","source":"aws.guardduty","account":"111122223333","time":"2024-05-01T10:00:00Z","region":"us-east-1","resources":[],"detail":{first}}}"#
        );
        let (events, _) = run(&eb);
        let direct = run(first).0;
        assert_eq!(
            events[0].get_str("rule.name"),
            direct[0].get_str("rule.name")
        );
        assert_eq!(events[0].get_str("event.id"), direct[0].get_str("event.id"));
    }

    #[test]
    fn broken_findings_are_forwarded_raw() {
        let first = SAMPLE.lines().next().unwrap();
        let text = format!(
            "{first}\n{{\"id\":\"x\",\"updatedAt\":\"not a time\"}}\n{}\n",
            &first[..first.len() / 2]
        );
        let (events, stats) = run(&text);
        assert_eq!(events.len(), 3);
        assert_eq!(stats.malformed, 2);
        assert_error_contains(&events[1], "invalid updatedAt");
        assert_eq!(events[2].get_str("event.kind"), Some("pipeline_error"));
        assert_eq!(
            events[2].get_str("event.original"),
            Some(&first[..first.len() / 2])
        );
    }

    #[test]
    fn unknown_fields_are_kept() {
        let (events, _) = run(
            r#"{"id":"f1","type":"Impact:S3/MaliciousIPCaller","severity":"5.5","updatedAt":"2024-05-01T10:00:00Z","newTopLevel":{"someKey":1},"service":{"action":{"actionType":"AWS_API_CALL","awsApiCallAction":{"remoteIpDetails":{"ipAddressV6":"2001:0db8::0001","organization":{"asn":"-1"}}}}}}"#,
        );
        let e = events[0].to_json();
        assert_eq!(e["aws"]["guardduty"]["new_top_level"]["some_key"], 1);
        assert_eq!(e["event"]["severity"], 5);
        assert_eq!(e["aws"]["guardduty"]["severity"]["code"], 5.5);
        assert_eq!(e["source"]["ip"], "2001:db8::1");
        assert!(e["source"].get("as").is_none());
    }
}
