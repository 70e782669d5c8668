//! AWS CloudTrail: management, data, network-activity and Insight events.
//!
//! CloudTrail delivers one JSON document per file, `{"Records":[...]}`, on a single line
//! that can be tens of megabytes. The document is never built in memory:
//! [`crate::readers::json_records`] streams the `Records` array and hands over one element at a time
//! (each bounded to [`crate::readers::json_records::MAX_RECORD`]), so memory stays flat whatever the file
//! size. The same reader accepts one record per line (CloudWatch Logs exports, Firehose,
//! EventBridge archives) and a bare top-level array.
//!
//! Digest files (`CloudTrail-Digest` in the key) hold integrity hashes, not events; they
//! are skipped as a whole and the skip is recorded in the object's stats.

use serde_json::Value as J;

use crate::driver::{LineContext, RecordError};
use crate::enrich::DomainField;
use crate::event::{Event, Value};
use crate::util;

use crate::readers::json_records::{
    JsonMap, snake_case, take_object, take_string, take_strings_into,
};
use crate::registry::{ContentClue, FirstLine, FormatSpec, KeyClue, Reader, SkipRule, has_json_keys};

/// CloudTrail records: `{"Records": [...]}` documents, bare arrays, or one per line.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "cloudtrail",
    dataset: "aws.cloudtrail",
    example_key: "AWSLogs/123456789012/CloudTrail/us-east-1/2024/03/15/123456789012_CloudTrail_us-east-1_20240315T0005Z_EXAMPLEa1b2c3d4.json.gz",
    key_clues: &[KeyClue {
        rank: 10,
        layout: "AWSLogs/<account>/CloudTrail/",
        matches: |k| {
            k.key.contains("/CloudTrail/")
                || k.key.contains("/CloudTrail-Insight/")
                || k.file_name.contains("_CloudTrail_")
        },
    }],
    content_clues: &[
        ContentClue {
            rank: 100,
            what: "{\"Records\": [...]}",
            first_line: FirstLine::Json,
            matches: |line| {
                line.contains("\"Records\"")
                    && (line.contains("\"eventVersion\"")
                        || line.contains("\"eventSource\"")
                        || line.len() < 40)
            },
        },
        ContentClue {
            rank: 101,
            what: "CloudTrail record",
            first_line: FirstLine::Json,
            matches: |line| has_json_keys(line, &["eventVersion", "eventSource"]),
        },
    ],
    // Digest files hold integrity hashes of log files, not events.
    skip: Some(SkipRule {
        key_contains: "CloudTrail-Digest",
        reason: "CloudTrail digest file (integrity hashes, not events)",
    }),
    options: &[],
    reader: Reader::JsonRecords {
        wrappers: &["Records"],
        map: map_record,
    },
};

/// Maps one CloudTrail record (management, data, network activity, service or Insight
/// event) to ECS. Every field of the record ends up somewhere: mapped to ECS, kept under
/// `aws.cloudtrail.*`, or (for fields this parser does not know yet) copied under
/// `aws.cloudtrail.<snake_case name>`.
pub(crate) fn map_record(cx: &LineContext<'_>, mut rec: JsonMap) -> Result<Event, RecordError> {
    // Events routed through EventBridge (`"detail-type": "AWS API Call via CloudTrail"`)
    // carry the record under `detail`.
    if rec.get("detail-type").is_some_and(J::is_string)
        && rec.get("detail").is_some_and(J::is_object)
        && !rec.contains_key("eventVersion")
        && let Some(detail) = take_object(&mut rec, "detail")
    {
        rec = detail;
    }

    let mut ev = Event::new();
    if let Some(t) = take_string(&mut rec, "eventTime") {
        let ts = util::iso_timestamp(&t).ok_or_else(|| RecordError::invalid("eventTime", &t))?;
        ev.set("@timestamp", ts);
    }

    let mut insight = take_object(&mut rec, "insightDetails");
    let event_name = take_string(&mut rec, "eventName").or_else(|| {
        insight
            .as_ref()
            .and_then(|i| i.get("eventName"))
            .and_then(J::as_str)
            .map(str::to_owned)
    });
    let event_source = take_string(&mut rec, "eventSource").or_else(|| {
        insight
            .as_ref()
            .and_then(|i| i.get("eventSource"))
            .and_then(J::as_str)
            .map(str::to_owned)
    });
    let event_type = take_string(&mut rec, "eventType");
    let event_category = take_string(&mut rec, "eventCategory");
    let is_insight = insight.is_some()
        || event_type.as_deref() == Some("AwsCloudTrailInsight")
        || event_category.as_deref() == Some("Insight");

    ev.set_str("event.action", event_name.as_deref());
    ev.set_str("event.provider", event_source.as_deref());
    if let Some(service) = event_source
        .as_deref()
        .map(|s| s.strip_suffix(".amazonaws.com").unwrap_or(s))
        .filter(|s| !s.is_empty())
    {
        ev.set("cloud.service.name", service.to_owned());
    }
    ev.set_opt("event.id", take_string(&mut rec, "eventID"));
    ev.set_opt("cloud.region", take_string(&mut rec, "awsRegion"));

    let recipient = take_string(&mut rec, "recipientAccountId");
    let identity = take_object(&mut rec, "userIdentity")
        .map(|ui| map_user_identity(&mut ev, ui))
        .unwrap_or_default();
    // Both peers use the caller's account: the account whose credentials acted. The
    // account that logged the event stays in `aws.cloudtrail.recipient_account_id`.
    if let Some(account) = identity.account_id.or_else(|| recipient.clone()) {
        ev.set("cloud.account.id", account);
    }
    ev.set_opt("aws.cloudtrail.recipient_account_id", recipient);

    if let Some(addr) = take_string(&mut rec, "sourceIPAddress") {
        map_source(cx, &mut ev, &addr);
    }
    if let Some(ua) = take_string(&mut rec, "userAgent") {
        cx.enricher.user_agent(&mut ev, &ua);
    }

    let error_code = take_string(&mut rec, "errorCode");
    let error_message = take_string(&mut rec, "errorMessage");
    let mut outcome = if error_code.is_some() || error_message.is_some() {
        "failure"
    } else {
        "success"
    };
    ev.set_opt("error.code", error_code);
    ev.set_opt("error.message", error_message);

    let request = take_object(&mut rec, "requestParameters");
    let response = take_object(&mut rec, "responseElements");
    let additional = take_object(&mut rec, "additionalEventData");

    if event_name.as_deref() == Some("ConsoleLogin") {
        // Sign-in failures carry no errorCode: the result is in the response.
        match response
            .as_ref()
            .and_then(|r| r.get("ConsoleLogin"))
            .and_then(J::as_str)
        {
            Some("Failure") => outcome = "failure",
            Some("Success") => outcome = "success",
            _ => {}
        }
        if let Some(a) = &additional {
            map_console_login(&mut ev, a);
        }
    }
    ev.set("event.outcome", outcome);

    let management = match rec.remove("managementEvent") {
        Some(v) => {
            let b = json_bool(&v);
            ev.set_opt("aws.cloudtrail.management_event", b);
            b == Some(true)
        }
        None => event_category.as_deref() == Some("Management"),
    };
    let (category, types) = categorize(
        event_source.as_deref(),
        event_name.as_deref(),
        management,
        is_insight,
    );
    if let Some(c) = category {
        ev.set("event.category", Value::Arr(vec![Value::Static(c)]));
    }
    ev.set(
        "event.type",
        Value::Arr(types.iter().map(|t| Value::Static(t)).collect()),
    );

    if event_source.as_deref() == Some("iam.amazonaws.com") {
        map_iam_targets(&mut ev, request.as_ref(), response.as_ref());
    }
    for key in ["userName", "newUserName"] {
        if let Some(name) = request
            .as_ref()
            .and_then(|r| r.get(key))
            .and_then(J::as_str)
            .filter(|s| !s.is_empty())
        {
            ev.push_unique("related.user", name.to_owned());
        }
    }

    if let Some(tls) = take_object(&mut rec, "tlsDetails") {
        map_tls(&mut ev, tls);
    }

    ev.set_opt(
        "aws.cloudtrail.event_version",
        take_string(&mut rec, "eventVersion"),
    );
    ev.set_opt("aws.cloudtrail.event_type", event_type);
    ev.set_opt("aws.cloudtrail.event_category", event_category);
    take_strings_into(
        &mut rec,
        &mut ev,
        &[
            ("aws.cloudtrail.request_id", "requestID"),
            ("aws.cloudtrail.api_version", "apiVersion"),
            ("aws.cloudtrail.shared_event_id", "sharedEventID"),
            ("aws.cloudtrail.vpc_endpoint_id", "vpcEndpointId"),
            ("aws.cloudtrail.vpc_endpoint_account_id", "vpcEndpointAccountId"),
        ],
    );
    if let Some(v) = rec.remove("readOnly") {
        ev.set_opt("aws.cloudtrail.read_only", json_bool(&v));
    }
    if let Some(v) = rec.remove("sessionCredentialFromConsole") {
        ev.set_opt(
            "aws.cloudtrail.session_credential_from_console",
            json_bool(&v),
        );
    }
    if let Some(J::Array(resources)) = rec.remove("resources") {
        let resources: Vec<J> = resources.into_iter().map(resource).collect();
        if !resources.is_empty() {
            ev.set("aws.cloudtrail.resources", J::Array(resources));
        }
    }
    // Request and response bodies keep their structure (they differ per API); the
    // serializer redacts secrets in them by key name and by value pattern.
    if let Some(r) = request.filter(|m| !m.is_empty()) {
        ev.set("aws.cloudtrail.request_parameters", J::Object(r));
    }
    if let Some(r) = response.filter(|m| !m.is_empty()) {
        ev.set("aws.cloudtrail.response_elements", J::Object(r));
    }
    if let Some(a) = additional.filter(|m| !m.is_empty()) {
        ev.set("aws.cloudtrail.additional_eventdata", J::Object(a));
    }
    if let Some(d) = take_object(&mut rec, "serviceEventDetails").filter(|m| !m.is_empty()) {
        ev.set("aws.cloudtrail.service_event_details", J::Object(d));
    }
    if let Some(i) = insight.take() {
        ev.set("aws.cloudtrail.insight_details", J::Object(i));
    }
    // Anything else (edgeDeviceDetails, addendum, eventContext, fields AWS adds later).
    for (key, value) in rec {
        if !json_is_empty(&value) {
            ev.set_dyn("aws.cloudtrail", &snake_case(&key), value);
        }
    }
    Ok(ev)
}

/// What the `userIdentity` element says about the caller, beyond what was set on the
/// event directly.
#[derive(Debug, Default)]
struct Identity {
    account_id: Option<String>,
}

/// Maps `userIdentity` to `user.*` and `aws.cloudtrail.user_identity.*`.
///
/// `user.name` is the person or workload acting: the IAM user name; for an assumed
/// role the *session* name (for IAM Identity Center and most federations that is the
/// human's login), with the role itself in `user.roles`; for a federated user the
/// federated name; for the root user `root`.
fn map_user_identity(ev: &mut Event, mut ui: JsonMap) -> Identity {
    let kind = take_string(&mut ui, "type");
    let principal = take_string(&mut ui, "principalId");
    let arn = take_string(&mut ui, "arn");
    let user_name = take_string(&mut ui, "userName");
    let account_id = take_string(&mut ui, "accountId");

    let mut issuer_role = None;
    let mut issuer_name = None;
    if let Some(mut sc) = take_object(&mut ui, "sessionContext") {
        if let Some(mut attrs) = take_object(&mut sc, "attributes") {
            if let Some(v) = attrs.remove("mfaAuthenticated") {
                ev.set_opt(
                    "aws.cloudtrail.user_identity.session_context.mfa_authenticated",
                    json_bool(&v),
                );
            }
            if let Some(d) = take_string(&mut attrs, "creationDate") {
                let d = basic_iso_timestamp(&d).unwrap_or(d);
                ev.set(
                    "aws.cloudtrail.user_identity.session_context.creation_date",
                    d,
                );
            }
            copy_rest(
                ev,
                "aws.cloudtrail.user_identity.session_context.attributes",
                attrs,
            );
        }
        if let Some(mut issuer) = take_object(&mut sc, "sessionIssuer") {
            let issuer_type = take_string(&mut issuer, "type");
            issuer_name = take_string(&mut issuer, "userName");
            if issuer_type.as_deref() == Some("Role") {
                issuer_role.clone_from(&issuer_name);
            }
            ev.set_opt(
                "aws.cloudtrail.user_identity.session_context.session_issuer.type",
                issuer_type,
            );
            ev.set_opt(
                "aws.cloudtrail.user_identity.session_context.session_issuer.user_name",
                issuer_name.clone(),
            );
            take_strings_into(
                &mut issuer,
                ev,
                &[
                    ("aws.cloudtrail.user_identity.session_context.session_issuer.principal_id", "principalId"),
                    ("aws.cloudtrail.user_identity.session_context.session_issuer.arn", "arn"),
                    ("aws.cloudtrail.user_identity.session_context.session_issuer.account_id", "accountId"),
                ],
            );
            copy_rest(
                ev,
                "aws.cloudtrail.user_identity.session_context.session_issuer",
                issuer,
            );
        }
        if let Some(mut web) = take_object(&mut sc, "webIdFederationData") {
            ev.set_opt(
                "aws.cloudtrail.user_identity.session_context.web_id_federation_data.federated_provider",
                take_string(&mut web, "federatedProvider"),
            );
            copy_rest(
                ev,
                "aws.cloudtrail.user_identity.session_context.web_id_federation_data",
                web,
            );
        }
        copy_rest(ev, "aws.cloudtrail.user_identity.session_context", sc);
    }
    if let Some(mut on_behalf) = take_object(&mut ui, "onBehalfOf") {
        let user_id = take_string(&mut on_behalf, "userId");
        if principal.is_none() {
            ev.set_opt("user.id", user_id.clone());
        }
        ev.set_opt("aws.cloudtrail.user_identity.on_behalf_of.user_id", user_id);
        ev.set_opt(
            "aws.cloudtrail.user_identity.on_behalf_of.identity_store_arn",
            take_string(&mut on_behalf, "identityStoreArn"),
        );
        copy_rest(ev, "aws.cloudtrail.user_identity.on_behalf_of", on_behalf);
    }

    // `arn:aws:sts::111122223333:assumed-role/Role/Session`
    let arn_tail = arn.as_deref().and_then(|a| a.split_once(":assumed-role/"));
    let (arn_role, arn_session) = match arn_tail.and_then(|(_, rest)| rest.split_once('/')) {
        Some((role, session)) => (Some(role), Some(session)),
        None => (None, None),
    };
    let after_colon = principal
        .as_deref()
        .and_then(|p| p.split_once(':'))
        .map(|(_, s)| s);
    let name: Option<String> = match kind.as_deref() {
        Some("AssumedRole") => arn_session
            .or(after_colon)
            .map(str::to_owned)
            .or_else(|| issuer_name.clone()),
        Some("FederatedUser") => arn
            .as_deref()
            .and_then(|a| a.split_once(":federated-user/"))
            .map(|(_, n)| n.to_owned())
            .or_else(|| after_colon.map(str::to_owned)),
        Some("Root") => user_name.clone().or_else(|| Some("root".to_owned())),
        _ => user_name.clone(),
    };
    let role = issuer_role.or_else(|| arn_role.map(str::to_owned));
    if let Some(name) = util::present(name.as_deref()) {
        ev.set("user.name", name.to_owned());
        ev.push_unique("related.user", name.to_owned());
        if looks_like_email(name) {
            ev.set("user.email", name.to_owned());
        }
    }
    if let Some(u) = util::present(user_name.as_deref())
        && name.as_deref() != Some(u)
    {
        ev.push_unique("related.user", u.to_owned());
    }
    if let Some(role) = role.filter(|r| !r.is_empty()) {
        ev.set("user.roles", Value::Arr(vec![Value::Str(role)]));
    }
    ev.set_opt("user.id", principal);
    ev.set_opt("aws.cloudtrail.user_identity.type", kind);
    ev.set_opt("aws.cloudtrail.user_identity.arn", arn);
    take_strings_into(
        &mut ui,
        ev,
        &[
            ("aws.cloudtrail.user_identity.access_key_id", "accessKeyId"),
            ("aws.cloudtrail.user_identity.invoked_by", "invokedBy"),
            ("aws.cloudtrail.user_identity.identity_provider", "identityProvider"),
            ("aws.cloudtrail.user_identity.credential_id", "credentialId"),
        ],
    );
    copy_rest(ev, "aws.cloudtrail.user_identity", ui);
    Identity { account_id }
}

/// `sourceIPAddress` is an address for callers outside AWS and a service name
/// (`lambda.amazonaws.com`, `AWS Internal`) when a service acted on someone's behalf.
fn map_source(cx: &LineContext<'_>, ev: &mut Event, addr: &str) {
    ev.set("source.address", addr.to_owned());
    if let Some(ip) = util::canonical_ip(addr) {
        ev.set("source.ip", ip.clone());
        ev.push_unique("related.ip", ip);
    } else if is_host_name(addr) {
        cx.enricher.domain(ev, DomainField::Source, addr);
    }
}

fn is_host_name(s: &str) -> bool {
    s.contains('.')
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// `ConsoleLogin` details as booleans (`"MFAUsed": "No"`), like Elastic's
/// `aws.cloudtrail.console_login.*`.
fn map_console_login(ev: &mut Event, additional: &JsonMap) {
    let yes_no = |k: &str| {
        additional
            .get(k)
            .and_then(J::as_str)
            .map(|v| !v.eq_ignore_ascii_case("no"))
    };
    ev.set_opt(
        "aws.cloudtrail.console_login.additional_eventdata.mobile_version",
        yes_no("MobileVersion"),
    );
    ev.set_opt(
        "aws.cloudtrail.console_login.additional_eventdata.mfa_used",
        yes_no("MFAUsed"),
    );
    ev.set_str(
        "aws.cloudtrail.console_login.additional_eventdata.login_to",
        additional.get("LoginTo").and_then(J::as_str),
    );
    ev.set_str(
        "aws.cloudtrail.console_login.additional_eventdata.mfa_type",
        additional.get("MfaType").and_then(J::as_str),
    );
}

/// IAM calls name the user or group they act on; ECS has `user.target.*`,
/// `user.changes.*` and `group.*` for that.
fn map_iam_targets(ev: &mut Event, request: Option<&JsonMap>, response: Option<&JsonMap>) {
    let req = |k: &str| {
        request
            .and_then(|r| r.get(k))
            .and_then(J::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(name) = req("userName") {
        ev.set("user.target.name", name.to_owned());
    }
    if let Some(name) = req("newUserName") {
        ev.set("user.changes.name", name.to_owned());
    }
    if let Some(name) = req("groupName") {
        ev.set("group.name", name.to_owned());
    }
    let resp = |parent: &str, k: &str| {
        response
            .and_then(|r| r.get(parent))
            .and_then(|p| p.get(k))
            .and_then(J::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(id) = resp("user", "userId") {
        ev.set("user.target.id", id.to_owned());
    }
    if let Some(id) = resp("group", "groupId") {
        ev.set("group.id", id.to_owned());
    }
}

fn map_tls(ev: &mut Event, mut tls: JsonMap) {
    if let Some(v) = take_string(&mut tls, "tlsVersion") {
        // `TLSv1.2` -> protocol `tls`, version `1.2`.
        match v.split_once('v') {
            Some((proto, version)) if !proto.is_empty() && !version.is_empty() => {
                ev.set("tls.version_protocol", proto.to_ascii_lowercase());
                ev.set("tls.version", version.to_owned());
            }
            _ => ev.set("tls.version", v),
        }
    }
    ev.set_opt("tls.cipher", take_string(&mut tls, "cipherSuite"));
    ev.set_opt(
        "tls.client.server_name",
        take_string(&mut tls, "clientProvidedHostHeader"),
    );
    copy_rest(ev, "aws.cloudtrail.tls_details", tls);
}

/// A `resources` entry with ECS-style key names (`ARN` -> `arn`, `accountId` ->
/// `account_id`).
fn resource(r: J) -> J {
    match r {
        J::Object(m) => J::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let k = if k == "ARN" {
                        "arn".to_owned()
                    } else {
                        snake_case(&k)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// Copies the fields left in `rest` under `parent` with snake_case names, so that a
/// field this parser does not know yet is still forwarded.
fn copy_rest(ev: &mut Event, parent: &'static str, rest: JsonMap) {
    for (key, value) in rest {
        if !json_is_empty(&value) {
            ev.set_dyn(parent, &snake_case(&key), value);
        }
    }
}

fn json_is_empty(v: &J) -> bool {
    match v {
        J::Null => true,
        J::String(s) => s.is_empty(),
        J::Object(m) => m.is_empty(),
        J::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// CloudTrail writes some booleans as strings (`"mfaAuthenticated": "false"`).
fn json_bool(v: &J) -> Option<bool> {
    match v {
        J::Bool(b) => Some(*b),
        J::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        J::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Accepts RFC 3339 and the ISO 8601 basic form older records use
/// (`20131102T010628Z`); `None` for anything else.
fn basic_iso_timestamp(v: &str) -> Option<String> {
    if let Some(t) = util::iso_timestamp(v) {
        return Some(t);
    }
    let b = v.as_bytes();
    if b.len() == 16 && b[8] == b'T' && b[15] == b'Z' {
        let extended = format!(
            "{}-{}-{}T{}:{}:{}Z",
            &v[0..4],
            &v[4..6],
            &v[6..8],
            &v[9..11],
            &v[11..13],
            &v[13..15]
        );
        return util::iso_timestamp(&extended);
    }
    None
}

/// ECS categorization by API. Sign-in and STS credential calls are `authentication`,
/// IAM calls `iam` (with the `user`/`group`/`admin` subject type ECS defines), S3 calls
/// `file`, and other management calls that change something `configuration`. Read-only
/// and unrecognised calls get type `info` only: guessing a category would mislead more
/// than it helps.
fn categorize(
    source: Option<&str>,
    name: Option<&str>,
    management: bool,
    insight: bool,
) -> (Option<&'static str>, Vec<&'static str>) {
    if insight {
        return (None, vec!["info"]);
    }
    let name = name.unwrap_or("");
    let service = source
        .unwrap_or("")
        .strip_suffix(".amazonaws.com")
        .unwrap_or("");
    let verb = verb_type(name);
    match service {
        "signin" => {
            let t = match name {
                "ConsoleLogin"
                | "SwitchRole"
                | "RenewRole"
                | "ExternalIdPDirectoryLogin"
                | "UserAuthentication"
                | "CredentialChallenge" => "start",
                "ExitRole" | "Logout" => "end",
                _ => "info",
            };
            (Some("authentication"), vec![t])
        }
        "sts"
            if name.starts_with("AssumeRole")
                || name == "GetSessionToken"
                || name == "GetFederationToken"
                || name == "AssumeRoot" =>
        {
            (Some("authentication"), vec!["start"])
        }
        "sts" => (Some("authentication"), vec!["info"]),
        "iam" => {
            let subject = if name.contains("Group") {
                "group"
            } else if [
                "User",
                "AccessKey",
                "LoginProfile",
                "MFADevice",
                "SSHPublicKey",
                "SigningCertificate",
                "ServiceSpecificCredential",
                "Password",
            ]
            .iter()
            .any(|w| name.contains(w))
            {
                "user"
            } else {
                "admin"
            };
            (Some("iam"), vec![subject, verb.unwrap_or("change")])
        }
        "s3" => {
            let t = match verb {
                Some("info") => "access",
                Some(t) => t,
                None => "access",
            };
            (Some("file"), vec![t])
        }
        _ => match verb {
            Some("info") | None => (None, vec!["info"]),
            Some(t) if management => (Some("configuration"), vec![t]),
            Some(_) => (None, vec!["info"]),
        },
    }
}

/// `creation`, `deletion`, `change` or `info` from an API name's verb; `None` when the
/// verb says nothing (Decrypt, Invoke, SendMessage...).
fn verb_type(name: &str) -> Option<&'static str> {
    const CREATION: &[&str] = &["Create", "Run", "Allocate", "Import", "Generate"];
    const DELETION: &[&str] = &["Delete", "Terminate", "Release", "Deregister", "Purge"];
    const INFO: &[&str] = &[
        "Get", "List", "Describe", "Head", "Lookup", "Search", "Select", "Scan", "Query",
        "BatchGet", "Check", "Filter", "Preview", "Simulate", "Test", "Validate", "Download",
        "Estimate",
    ];
    const CHANGE: &[&str] = &[
        "Put",
        "Update",
        "Modify",
        "Attach",
        "Detach",
        "Set",
        "Enable",
        "Disable",
        "Authorize",
        "Revoke",
        "Start",
        "Stop",
        "Reboot",
        "Tag",
        "Untag",
        "Associate",
        "Disassociate",
        "Add",
        "Remove",
        "Reset",
        "Replace",
        "Restore",
        "Change",
        "Upload",
        "Copy",
        "Complete",
        "Abort",
        "Apply",
        "Accept",
        "Reject",
        "Cancel",
        "Assign",
        "Unassign",
        "Register",
        "Rotate",
        "Upgrade",
        "Schedule",
        "Rename",
        "Move",
    ];
    // A verb is a prefix followed by an upper-case letter (or the end): `Get` matches
    // `GetObject` but not `Getaway`.
    let is = |set: &[&str]| {
        set.iter().any(|v| {
            name.strip_prefix(v)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_uppercase))
        })
    };
    if is(INFO) {
        Some("info")
    } else if is(CREATION) {
        Some("creation")
    } else if is(DELETION) {
        Some("deletion")
    } else if is(CHANGE) {
        Some("change")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use std::io::{BufReader, Read};

    use crate::{
        Enricher, Event, Format, ObjectInfo, ParseOptions, ParseStats, assert_error_contains,
        assert_fields, parse_object,
    };

    const SAMPLE: &str = include_str!("../../../../tests/samples/cloudtrail.log");

    struct Run {
        events: Vec<Event>,
        stats: ParseStats,
    }

    impl Run {
        /// Asserts how many events the object gave and how many of them are raw
        /// events of records that did not parse.
        #[track_caller]
        fn assert_counts(&self, events: usize, malformed: u64) {
            assert_eq!((self.events.len(), self.stats.malformed), (events, malformed));
        }
    }

    fn run_with(reader: &mut dyn std::io::BufRead, key: &str, opts: &ParseOptions) -> Run {
        let (events, stats) =
            crate::parse_object_for_test(Format::CloudTrail, reader, "trail-bucket", key, opts);
        Run { events, stats }
    }

    const KEY: &str = "AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T1005Z_a1b2c3d4e5f6g7h8.json.gz";

    fn run(text: &str) -> Run {
        run_with(&mut text.as_bytes(), KEY, &ParseOptions::default())
    }

    /// Reads through a 16-byte buffer: every record spans many `fill_buf` calls.
    fn run_tiny_buffer(text: &str) -> Run {
        let mut r = BufReader::with_capacity(16, text.as_bytes());
        run_with(&mut r, KEY, &ParseOptions::default())
    }

    fn by_action<'a>(events: &'a [Event], action: &str) -> Vec<&'a Event> {
        events
            .iter()
            .filter(|e| e.get_str("event.action") == Some(action))
            .collect()
    }

    #[test]
    fn sample_file_maps_every_record() {
        let r = run(SAMPLE);
        assert_eq!(r.stats.malformed, 0, "{:?}", r.events);
        assert_eq!(r.stats.records as usize, r.events.len());
        assert!(r.events.len() >= 9);
        assert_eq!(r.stats.bytes, SAMPLE.len() as u64);
        for e in &r.events {
            assert_eq!(e.get_str("event.dataset"), Some("aws.cloudtrail"));
            assert!(e.get_str("@timestamp").is_some());
            // eventID is the native unique id.
            assert_eq!(e.get_str("event.id").map(str::len), Some(36));
        }
        // Same content through a 16-byte buffer gives the same events.
        let tiny = run_tiny_buffer(SAMPLE);
        assert_eq!(tiny.events, r.events);
    }

    #[test]
    fn console_login_success_and_failure() {
        let r = run(SAMPLE);
        let logins = by_action(&r.events, "ConsoleLogin");
        assert_eq!(logins.len(), 2);
        let ok = logins[0].to_json();
        assert_fields(
            &ok,
            json!({
                "event": {
                    "outcome": "success",
                    "category": ["authentication"],
                    "type": ["start"],
                    "provider": "signin.amazonaws.com",
                },
                "cloud": {"service": {"name": "signin"}},
                "user": {"name": "Mateo", "id": "AIDACKCEVSQ6C2EXAMPLE"},
                "source": {"ip": "192.0.2.110"},
                "related": {"ip": ["192.0.2.110"]},
                "user_agent": {"name": "Firefox"},
                "aws": {
                    "cloudtrail": {"console_login": {"additional_eventdata": {"mfa_used": true}}},
                },
            }),
        );
        let bad = logins[1].to_json();
        assert_eq!(bad["event"]["outcome"], "failure");
        assert_eq!(bad["error"]["message"], "Failed authentication");
        assert_eq!(
            bad["aws"]["cloudtrail"]["response_elements"]["ConsoleLogin"],
            "Failure"
        );
    }

    #[test]
    fn assumed_role_session_is_the_user_and_role_is_kept() {
        let r = run(SAMPLE);
        let e = by_action(&r.events, "PutObject")[0].to_json();
        assert_fields(
            &e,
            json!({
                "user": {
                    "name": "jdoe@example.com",
                    "email": "jdoe@example.com",
                    "roles": ["AWSReservedSSO_AdministratorAccess_0123456789abcdef"],
                },
                "aws": {
                    "cloudtrail": {
                        "user_identity": {
                            "session_context": {
                                "session_issuer": {
                                    "user_name": "AWSReservedSSO_AdministratorAccess_0123456789abcdef",
                                },
                                "mfa_authenticated": false,
                                "creation_date": "2024-05-01T09:12:44Z",
                            },
                        },
                        "resources": {
                            "0": {"arn": "arn:aws:s3:::amzn-s3-demo-bucket/reports/2024-05.csv"},
                            "1": {"account_id": "111122223333"},
                        },
                        "read_only": false,
                        "management_event": false,
                        "event_category": "Data",
                    },
                },
                "event": {"category": ["file"], "type": ["change"]},
                "tls": {
                    "version": "1.3",
                    "version_protocol": "tls",
                    "cipher": "TLS_AES_128_GCM_SHA256",
                    "client": {"server_name": "amzn-s3-demo-bucket.s3.us-east-1.amazonaws.com"},
                },
            }),
        );
    }

    #[test]
    fn session_tokens_in_request_parameters_are_redacted() {
        let r = run(SAMPLE);
        let e = by_action(&r.events, "GetObject")[0];
        let raw = e.to_json();
        assert!(
            raw["aws"]["cloudtrail"]["request_parameters"]["X-Amz-Security-Token"]
                .as_str()
                .unwrap()
                .starts_with("IQoJb3JpZ2luX2VjEXAMPLE")
        );
        let out = e.to_json_string(Some(&crate::Redactor::new()));
        assert!(!out.contains("IQoJb3JpZ2luX2VjEXAMPLE"), "{out}");
        assert!(
            out.contains(r#""X-Amz-Security-Token":"REDACTED""#),
            "{out}"
        );
        // event.original (when kept) is redacted too.
        let opts = ParseOptions {
            keep_original: true,
            ..Default::default()
        };
        let kept = run_with(&mut SAMPLE.as_bytes(), KEY, &opts);
        let e = by_action(&kept.events, "GetObject")[0];
        assert!(
            e.get_str("event.original")
                .unwrap()
                .contains("IQoJb3JpZ2luX2VjEXAMPLE")
        );
        let out = e.to_json_string(Some(&crate::Redactor::new()));
        assert!(!out.contains("IQoJb3JpZ2luX2VjEXAMPLE"), "{out}");
    }

    #[test]
    fn saml_federation_error_service_and_insight_events() {
        let r = run(SAMPLE);
        let saml = by_action(&r.events, "AssumeRoleWithSAML")[0].to_json();
        assert_eq!(saml["user"]["name"], "SamlExample");
        assert_eq!(saml["event"]["category"][0], "authentication");
        assert_eq!(
            saml["aws"]["cloudtrail"]["user_identity"]["type"],
            "SAMLUser"
        );
        assert_eq!(
            saml["aws"]["cloudtrail"]["user_identity"]["identity_provider"],
            "bdGOnTesti4+ExamplexL/jEvs="
        );
        // A SAML user has no account of its own: the recipient account stands in.
        assert_eq!(saml["cloud"]["account"]["id"], "111122223333");

        let err = by_action(&r.events, "RunInstances")[0].to_json();
        assert_eq!(err["event"]["outcome"], "failure");
        assert_eq!(err["error"]["code"], "Client.UnauthorizedOperation");
        assert_eq!(err["event"]["category"][0], "configuration");
        assert_eq!(err["event"]["type"][0], "creation");
        assert_eq!(err["user_agent"]["name"], "aws-cli");

        let svc = r
            .events
            .iter()
            .find(|e| e.get_str("aws.cloudtrail.event_type") == Some("AwsServiceEvent"))
            .unwrap()
            .to_json();
        assert_fields(
            &svc,
            json!({
                "source": {
                    "address": "backup.amazonaws.com",
                    "domain": "backup.amazonaws.com",
                    "registered_domain": "amazonaws.com",
                },
                "aws": {"cloudtrail": {"user_identity": {"invoked_by": "backup.amazonaws.com"}}},
            }),
        );
        assert!(svc["source"].get("ip").is_none());
        assert!(svc["aws"]["cloudtrail"]["service_event_details"].is_object());

        let insight = r
            .events
            .iter()
            .find(|e| e.get_str("aws.cloudtrail.event_type") == Some("AwsCloudTrailInsight"))
            .unwrap()
            .to_json();
        assert_eq!(insight["event"]["action"], "DeleteBucket");
        assert_eq!(insight["event"]["provider"], "s3.amazonaws.com");
        assert_eq!(insight["event"]["type"][0], "info");
        assert_eq!(
            insight["aws"]["cloudtrail"]["insight_details"]["insightType"],
            "ApiCallRateInsight"
        );
        assert_eq!(insight["cloud"]["account"]["id"], "111122223333");
    }

    #[test]
    fn iam_calls_name_their_target() {
        let r = run(SAMPLE);
        let e = by_action(&r.events, "CreateUser")[0].to_json();
        assert_fields(
            &e,
            json!({
                "event": {"category": ["iam"], "type": ["user", "creation"]},
                "user": {
                    "target": {"name": "Richard", "id": "AIDA6ON6E4XEGITEXAMPLE"},
                    "name": "root",
                },
                "related": {"user": ["root", "Richard"]},
            }),
        );
    }

    fn record(id: u32, extra: &str) -> String {
        format!(
            r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE{id}","arn":"arn:aws:iam::111122223333:user/u{id}","accountId":"111122223333","userName":"u{id}"}},"eventTime":"2024-05-01T10:00:{:02}Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.{id}","userAgent":"aws-cli/2.15.0","requestParameters":{{"note":{extra}}},"responseElements":null,"requestID":"req-{id}","eventID":"00000000-0000-0000-0000-{id:012}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#,
            id % 60
        )
    }

    #[test]
    fn tricky_strings_do_not_confuse_the_scanner() {
        let extras = [
            r#""]}],{\"Records\":[""#,
            r#""\\""#,
            r#""\\\"}]""#,
            r#""unicode é 日本 \u00e9 \ud83d\ude00""#,
            r#"{"nested":[{"a":"]"},[[["}"]]]]}"#,
        ];
        let records: Vec<String> = extras
            .iter()
            .enumerate()
            .map(|(i, x)| record(i as u32 + 1, x))
            .collect();
        let doc = format!("{{\"Records\":[{}]}}", records.join(","));
        for r in [run(&doc), run_tiny_buffer(&doc)] {
            assert_eq!(r.stats.malformed, 0, "{:?}", r.events);
            assert_eq!(r.events.len(), 5);
            let notes: Vec<serde_json::Value> = r
                .events
                .iter()
                .map(|e| e.to_json()["aws"]["cloudtrail"]["request_parameters"]["note"].clone())
                .collect();
            assert_eq!(notes[0], "]}],{\"Records\":[");
            assert_eq!(notes[1], "\\");
            assert_eq!(notes[2], "\\\"}]");
            assert_eq!(notes[3], "unicode é 日本 é 😀");
            assert_eq!(notes[4]["nested"][0]["a"], "]");
            assert_eq!(r.events[4].get_str("source.ip"), Some("198.51.100.5"));
        }
    }

    /// Records wholly inside the reader's buffer are parsed where they lie; the others
    /// go through the scanner. Every buffer size must give the same events, the raw
    /// ones included, whichever path each record took: records of every size, a bad
    /// one, invalid UTF-8, a non-object, a character of four bytes that a buffer end
    /// cuts, and a second wrapper document on the next line.
    #[test]
    fn records_in_the_buffer_and_records_across_it_give_the_same_events() {
        let mut doc = b"{\"Records\":[".to_vec();
        for i in 0..60u32 {
            let note = match i % 6 {
                0 => format!("\"{}\"", "x".repeat(i as usize * 97)),
                1 => "\"\u{1F600}\u{1F600}\u{1F600} \\\" }]\"".to_owned(),
                _ => i.to_string(),
            };
            doc.extend_from_slice(record(i + 1, &note).as_bytes());
            doc.push(b',');
            match i {
                7 => doc.extend_from_slice(b"{\"eventName\":\"\xff\"},"),
                19 => doc.extend_from_slice(b"{\"eventName\": tru},"),
                31 => doc.extend_from_slice(b"[1,2],"),
                _ => {}
            }
        }
        doc.extend_from_slice(record(99, "0").as_bytes());
        doc.extend_from_slice(b"]}\n{\"Records\":[");
        doc.extend_from_slice(record(100, "1").as_bytes());
        doc.extend_from_slice(b"]}\n");
        let opts = ParseOptions {
            keep_original: true,
            ..ParseOptions::default()
        };
        let whole = run_with(&mut &doc[..], KEY, &opts);
        whole.assert_counts(65, 3);
        for capacity in [16, 700, 1500, 4096, 4099, 9000] {
            let mut r = BufReader::with_capacity(capacity, &doc[..]);
            let r = run_with(&mut r, KEY, &opts);
            assert!(
                r.events == whole.events,
                "a buffer of {capacity} bytes gives other events"
            );
            assert_eq!(r.stats.bytes, doc.len() as u64);
        }
    }

    #[test]
    fn a_large_records_array_streams_in_small_reads() {
        let n = 2000;
        let mut doc = String::from("{\"Records\":[");
        for i in 0..n {
            if i > 0 {
                doc.push(',');
            }
            doc.push_str(&record(i, "\"x\""));
        }
        doc.push_str("]}");
        let r = run_tiny_buffer(&doc);
        assert_eq!(r.events.len(), n as usize);
        assert_eq!(r.stats.records, n as u64);
        assert_eq!(r.stats.malformed, 0);
        assert_eq!(r.stats.bytes, doc.len() as u64);
        // log.offset points at each record's first byte.
        let off = r.events[1].get("log.offset").and_then(|v| match v {
            crate::Value::U64(n) => Some(*n as usize),
            _ => None,
        });
        assert_eq!(off, Some(doc.find(&record(1, "\"x\"")).unwrap()));
        assert_eq!(
            r.events[n as usize - 1].get_str("event.id"),
            Some(format!("00000000-0000-0000-0000-{:012}", n - 1).as_str())
        );
    }

    #[test]
    fn empty_records_and_digest_files() {
        let r = run("{\"Records\":[]}");
        assert!(r.events.is_empty());
        assert_eq!(r.stats.malformed, 0);
        let r = run("  \n");
        assert!(r.events.is_empty());

        let digest_key = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20240501T100000Z.json.gz";
        let doc = format!("{{\"Records\":[{}]}}", record(1, "1"));
        let r = run_with(&mut doc.as_bytes(), digest_key, &ParseOptions::default());
        assert!(r.events.is_empty());
        assert!(r.stats.skipped.as_deref().unwrap().contains("digest"));
    }

    #[test]
    fn one_record_per_line_and_top_level_arrays() {
        let ndjson = format!(
            "{}\n\n{}\r\n{}\n",
            record(1, "1"),
            record(2, "2"),
            record(3, "3")
        );
        let r = run(&ndjson);
        assert_eq!(r.events.len(), 3);
        assert_eq!(r.events[2].get_str("user.name"), Some("u3"));
        assert_eq!(r.stats.bytes, ndjson.len() as u64);

        let array = format!("[\n {},\n {}\n]\n", record(1, "1"), record(2, "2"));
        let r = run_tiny_buffer(&array);
        r.assert_counts(2, 0);

        // Pretty-printed single record spanning lines.
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&record(7, "[1,2]")).unwrap(),
        )
        .unwrap();
        let r = run(&pretty);
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].get_str("user.name"), Some("u7"));

        // EventBridge envelope.
        let eb = format!(
            r#"{{"version":"0","id":"e1","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2","account":"111122223333","time":"2024-05-01T10:00:01Z","region":"eu-west-1","resources":[],"detail":{}}}"#,
            record(4, "1")
        );
        let r = run(&eb);
        assert_eq!(r.events[0].get_str("user.name"), Some("u4"));
        assert_eq!(
            r.events[0].get_str("event.action"),
            Some("DescribeInstances")
        );
    }

    #[test]
    fn bad_lines_in_ndjson_are_forwarded_alone() {
        let text = format!(
            "{}\n{{\"eventVersion\":\"1.09\",\"eventTime\":\n not json at all\n{}\n",
            record(1, "1"),
            record(2, "2")
        );
        let r = run(&text);
        r.assert_counts(4, 2);
        assert_eq!(r.events[1].get_str("event.kind"), Some("pipeline_error"));
        assert_eq!(
            r.events[1].get_str("event.original"),
            Some("{\"eventVersion\":\"1.09\",\"eventTime\":")
        );
        assert_eq!(
            r.events[2].get_str("event.original"),
            Some("not json at all")
        );
        assert_eq!(r.events[3].get_str("user.name"), Some("u2"));
    }

    #[test]
    fn a_bad_record_inside_a_good_file_is_forwarded_raw() {
        let doc = format!(
            "{{\"Records\":[{},{{\"eventTime\":\"yesterday\",\"eventName\":\"X\"}},{{\"a\":tru}},42,{}]}}",
            record(1, "1"),
            record(2, "2")
        );
        let r = run_tiny_buffer(&doc);
        r.assert_counts(5, 3);
        assert_eq!(r.events[0].get_str("user.name"), Some("u1"));
        let bad_time = r.events[1].to_json();
        assert_eq!(bad_time["event"]["kind"], "pipeline_error");
        assert_error_contains(&bad_time, "cloudtrail line 2: invalid eventTime");
        assert_eq!(
            bad_time["event"]["original"],
            "{\"eventTime\":\"yesterday\",\"eventName\":\"X\"}"
        );
        assert_error_contains(&r.events[2], "invalid JSON");
        assert_eq!(r.events[3].get_str("event.original"), Some("42"));
        assert_eq!(r.events[4].get_str("user.name"), Some("u2"));
        // Malformed records still get distinct deterministic ids.
        assert_ne!(
            r.events[2].get_str("event.id"),
            r.events[3].get_str("event.id")
        );
    }

    #[test]
    fn truncated_files_forward_the_tail() {
        let doc = format!("{{\"Records\":[{},{}]}}", record(1, "1"), record(2, "2"));
        let cut = &doc[..doc.len() - 40];
        let r = run_tiny_buffer(cut);
        r.assert_counts(2, 1);
        let tail = r.events[1].to_json();
        assert_eq!(tail["event"]["kind"], "pipeline_error");
        assert_error_contains(&tail, "truncated");
        assert!(record(2, "2").starts_with(tail["event"]["original"].as_str().unwrap()));

        // Cut inside the wrapper key itself.
        let r = run("{\"Reco");
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].get_str("event.original"), Some("{\"Reco"));

        // Cut inside a string with an escape at the very end.
        let r = run_tiny_buffer("{\"Records\":[{\"eventName\":\"a\\");
        assert_eq!(r.stats.malformed, 1);
    }

    #[test]
    fn oversized_records_are_bounded_and_the_stream_continues() {
        let big = format!("\"{}\"", "A".repeat(crate::readers::json_records::MAX_RECORD + 10));
        let doc = format!("{{\"Records\":[{},{}]}}", record(1, &big), record(2, "2"));
        let mut r = BufReader::with_capacity(64 * 1024, doc.as_bytes());
        let r = run_with(&mut r, KEY, &ParseOptions::default());
        r.assert_counts(2, 1);
        assert_error_contains(&r.events[0], "larger than");
        assert!(
            r.events[0].get_str("event.original").unwrap().len() <= crate::driver::ORIGINAL_KEEP
        );
        assert_eq!(r.events[1].get_str("user.name"), Some("u2"));
    }

    #[test]
    fn invalid_utf8_is_a_malformed_record_not_a_panic() {
        let mut doc = format!("{{\"Records\":[{},", record(1, "1")).into_bytes();
        doc.extend_from_slice(b"{\"eventName\":\"\xff\xfe\"},");
        doc.extend_from_slice(record(2, "2").as_bytes());
        doc.extend_from_slice(b"]}");
        let mut r: &[u8] = &doc;
        let r = run_with(&mut r, KEY, &ParseOptions::default());
        r.assert_counts(3, 1);
        assert_eq!(r.events[2].get_str("user.name"), Some("u2"));
    }

    #[test]
    fn unknown_fields_are_kept_in_snake_case() {
        let rec = record(1, "1").replacen(
            "\"eventVersion\"",
            "\"edgeDeviceDetails\":{\"deviceID\":\"d-1\"},\"someNewField\":\"v\",\"eventVersion\"",
            1,
        );
        let r = run(&rec);
        let e = r.events[0].to_json();
        assert_eq!(
            e["aws"]["cloudtrail"]["edge_device_details"]["deviceID"],
            "d-1"
        );
        assert_eq!(e["aws"]["cloudtrail"]["some_new_field"], "v");
        assert_eq!(e["event"]["type"][0], "info");
        assert!(e["event"].get("category").is_none());
    }

    #[test]
    fn reader_errors_surface_as_io_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("connection reset"))
            }
        }
        let mut r = BufReader::new(Failing);
        let mut out = Vec::new();
        let res = parse_object(
            Format::CloudTrail,
            &mut r,
            &ObjectInfo::default(),
            &ParseOptions::default(),
            &Enricher::new(),
            &mut out,
        );
        assert!(matches!(res, Err(crate::ParseError::Io(_))));
    }

    #[test]
    fn categorization_follows_the_api_verb() {
        use super::categorize;
        let iam = |n| categorize(Some("iam.amazonaws.com"), Some(n), true, false);
        assert_eq!(
            iam("AddUserToGroup"),
            (Some("iam"), vec!["group", "change"])
        );
        assert_eq!(iam("DeleteUser"), (Some("iam"), vec!["user", "deletion"]));
        assert_eq!(iam("UpdateRole"), (Some("iam"), vec!["admin", "change"]));
        assert_eq!(iam("ListUsers"), (Some("iam"), vec!["user", "info"]));
        assert_eq!(
            categorize(Some("sts.amazonaws.com"), Some("AssumeRole"), true, false),
            (Some("authentication"), vec!["start"])
        );
        assert_eq!(
            categorize(Some("s3.amazonaws.com"), Some("GetObject"), false, false),
            (Some("file"), vec!["access"])
        );
        assert_eq!(
            categorize(Some("s3.amazonaws.com"), Some("DeleteBucket"), true, false),
            (Some("file"), vec!["deletion"])
        );
        assert_eq!(
            categorize(
                Some("ec2.amazonaws.com"),
                Some("AuthorizeSecurityGroupIngress"),
                true,
                false
            ),
            (Some("configuration"), vec!["change"])
        );
        assert_eq!(
            categorize(Some("kms.amazonaws.com"), Some("Decrypt"), true, false),
            (None, vec!["info"])
        );
        assert_eq!(
            categorize(
                Some("lambda.amazonaws.com"),
                Some("UpdateFunctionCode"),
                false,
                false
            ),
            (None, vec!["info"])
        );
        assert_eq!(
            categorize(Some("ec2.amazonaws.com"), Some("Getaway"), true, false),
            (None, vec!["info"])
        );
    }
}
