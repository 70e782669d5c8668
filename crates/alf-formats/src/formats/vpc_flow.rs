//! VPC (and Transit Gateway) flow logs, versions 2 to 8: space-separated fields whose
//! order is chosen by the customer ("custom format"), so nothing assumes positions.
//!
//! The column layout comes from, in order of precedence:
//! 1. a header line in the object (`version account-id ...`: S3 delivery writes one at the
//!    top of every file, naming the fields in the configured order);
//! 2. `ParseOptions::vpc_flow_fields` (custom formats delivered without headers, e.g.
//!    through CloudWatch Logs or Firehose);
//! 3. the AWS default (version 2, 14 fields). A headerless record whose field count
//!    differs from 14 is matched against a few complete layouts that AWS documents
//!    (every field of a version in the documented order, the Transit Gateway default) and
//!    is malformed if none has that many fields.
//!
//! Records are also accepted wrapped in JSON: `{"message":"<record>"}` (CloudWatch
//! exports) and "structured" objects whose keys are the field names with `_` for `-`.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

use crate::detect::regex_matches;

use crate::driver::{LineOutcome, 
    LineContext, LineParser, RecordError,
};
use crate::event::{Event, Value};
use crate::readers::columns::column_table;
use crate::registry::{
    ContentClue, FirstLine, FormatSpec, KeyClue, OptionKind, OptionSpec, Reader,
};
use crate::util::{self, field};

column_table! {
    /// Every documented flow log field (VPC versions 2-8 and Transit Gateway).
    under "aws.vpcflow.";
    // version 2 (the default format)
    Version = "version" => "version", AccountId = "account-id" => "account_id",
    InterfaceId = "interface-id" => "interface_id", SrcAddr = "srcaddr" => "srcaddr",
    DstAddr = "dstaddr" => "dstaddr", SrcPort = "srcport" => "srcport",
    DstPort = "dstport" => "dstport", Protocol = "protocol" => "protocol",
    Packets = "packets" => "packets", Bytes = "bytes" => "bytes", Start = "start" => "start",
    End = "end" => "end", Action = "action" => "action", LogStatus = "log-status" => "log_status",
    // version 3
    VpcId = "vpc-id" => "vpc_id", SubnetId = "subnet-id" => "subnet_id",
    InstanceId = "instance-id" => "instance_id", TcpFlags = "tcp-flags" => "tcp_flags",
    Type = "type" => "type", PktSrcAddr = "pkt-srcaddr" => "pkt_srcaddr",
    PktDstAddr = "pkt-dstaddr" => "pkt_dstaddr",
    // version 4
    Region = "region" => "region", AzId = "az-id" => "az_id",
    SublocationType = "sublocation-type" => "sublocation_type",
    SublocationId = "sublocation-id" => "sublocation_id",
    // version 5
    PktSrcAwsService = "pkt-src-aws-service" => "pkt_src_aws_service",
    PktDstAwsService = "pkt-dst-aws-service" => "pkt_dst_aws_service",
    FlowDirection = "flow-direction" => "flow_direction",
    TrafficPath = "traffic-path" => "traffic_path",
    // version 6: Transit Gateway flow logs
    ResourceType = "resource-type" => "resource_type", TgwId = "tgw-id" => "tgw_id",
    TgwAttachmentId = "tgw-attachment-id" => "tgw_attachment_id",
    TgwSrcVpcAccountId = "tgw-src-vpc-account-id" => "tgw_src_vpc_account_id",
    TgwDstVpcAccountId = "tgw-dst-vpc-account-id" => "tgw_dst_vpc_account_id",
    TgwSrcVpcId = "tgw-src-vpc-id" => "tgw_src_vpc_id",
    TgwDstVpcId = "tgw-dst-vpc-id" => "tgw_dst_vpc_id",
    TgwSrcSubnetId = "tgw-src-subnet-id" => "tgw_src_subnet_id",
    TgwDstSubnetId = "tgw-dst-subnet-id" => "tgw_dst_subnet_id",
    TgwSrcEni = "tgw-src-eni" => "tgw_src_eni", TgwDstEni = "tgw-dst-eni" => "tgw_dst_eni",
    TgwSrcAzId = "tgw-src-az-id" => "tgw_src_az_id",
    TgwDstAzId = "tgw-dst-az-id" => "tgw_dst_az_id",
    TgwPairAttachmentId = "tgw-pair-attachment-id" => "tgw_pair_attachment_id",
    PacketsLostNoRoute = "packets-lost-no-route" => "packets_lost_no_route",
    PacketsLostBlackhole = "packets-lost-blackhole" => "packets_lost_blackhole",
    PacketsLostMtuExceeded = "packets-lost-mtu-exceeded" => "packets_lost_mtu_exceeded",
    PacketsLostTtlExpired = "packets-lost-ttl-expired" => "packets_lost_ttl_expired",
    // version 7: ECS tasks
    EcsClusterArn = "ecs-cluster-arn" => "ecs_cluster_arn",
    EcsClusterName = "ecs-cluster-name" => "ecs_cluster_name",
    EcsContainerInstanceArn = "ecs-container-instance-arn" => "ecs_container_instance_arn",
    EcsContainerInstanceId = "ecs-container-instance-id" => "ecs_container_instance_id",
    EcsContainerId = "ecs-container-id" => "ecs_container_id",
    EcsSecondContainerId = "ecs-second-container-id" => "ecs_second_container_id",
    EcsServiceName = "ecs-service-name" => "ecs_service_name",
    EcsTaskDefinitionArn = "ecs-task-definition-arn" => "ecs_task_definition_arn",
    EcsTaskArn = "ecs-task-arn" => "ecs_task_arn", EcsTaskId = "ecs-task-id" => "ecs_task_id",
    // version 8
    RejectReason = "reject-reason" => "reject_reason",
}

/// Columns whose value is fully represented by ECS fields; every other present value is
/// also kept under `aws.vpcflow.<name with _>`.
const MOVED_TO_ECS: &[Col] = &[
    Col::SrcAddr,
    Col::DstAddr,
    Col::SrcPort,
    Col::DstPort,
    Col::Protocol,
    Col::Packets,
    Col::Bytes,
    Col::Start,
    Col::End,
    Col::Region,
    Col::AzId,
    Col::FlowDirection,
    Col::RejectReason,
    Col::EcsClusterArn,
    Col::EcsClusterName,
    Col::EcsContainerInstanceArn,
    Col::EcsContainerInstanceId,
    Col::EcsServiceName,
];

/// Kept columns whose values are counters (stored as numbers, not strings).
const COUNTERS: &[Col] = &[
    Col::PacketsLostNoRoute,
    Col::PacketsLostBlackhole,
    Col::PacketsLostMtuExceeded,
    Col::PacketsLostTtlExpired,
];

/// The AWS default format (version 2).
const DEFAULT_FIELDS: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

/// Complete layouts AWS documents, tried for headerless records (when no field list is
/// configured) whose field count is not the default's. Each has a distinct field count.
const DOCUMENTED_LAYOUTS: &[&str] = &[
    // Every version 5 field, in the documented order.
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path",
    // Every version 7 field (adds the ECS fields), in the documented order.
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path ecs-cluster-arn ecs-cluster-name ecs-container-instance-arn ecs-container-instance-id ecs-container-id ecs-second-container-id ecs-service-name ecs-task-definition-arn ecs-task-arn ecs-task-id",
    // Every version 8 field (adds reject-reason).
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status vpc-id subnet-id instance-id tcp-flags type pkt-srcaddr pkt-dstaddr region az-id sublocation-type sublocation-id pkt-src-aws-service pkt-dst-aws-service flow-direction traffic-path ecs-cluster-arn ecs-cluster-name ecs-container-instance-arn ecs-container-instance-id ecs-container-id ecs-second-container-id ecs-service-name ecs-task-definition-arn ecs-task-arn ecs-task-id reject-reason",
    // The Transit Gateway flow log default format.
    "version resource-type account-id tgw-id tgw-attachment-id tgw-src-vpc-account-id tgw-dst-vpc-account-id tgw-src-vpc-id tgw-dst-vpc-id tgw-src-subnet-id tgw-dst-subnet-id tgw-src-eni tgw-dst-eni tgw-src-az-id tgw-dst-az-id tgw-pair-attachment-id srcaddr dstaddr srcport dstport protocol packets bytes start end log-status type packets-lost-no-route packets-lost-blackhole packets-lost-mtu-exceeded packets-lost-ttl-expired tcp-flags region flow-direction pkt-src-aws-service pkt-dst-aws-service",
    // The custom format of AWS's "traffic through a NAT gateway" record examples.
    "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status",
];

/// TCP flag bits as AWS reports them (OR-ed over the aggregation interval: 18 is SYN-ACK,
/// 19 SYN-ACK plus FIN), named in lower case like Suricata and Elastic.
const TCP_FLAGS: [(u64, &str); 8] = [
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "psh"),
    (0x10, "ack"),
    (0x20, "urg"),
    (0x40, "ece"),
    (0x80, "cwr"),
];

/// A column of the current layout: a documented field, or an unknown one kept under
/// `aws.vpcflow.<name with _>` (AWS adds fields over time).
#[derive(Debug, Clone)]
enum Column {
    Known(Col),
    Other(String),
}

fn column(name: &str) -> Column {
    match KNOWN.iter().find(|(n, _, _)| *n == name) {
        Some((_, _, c)) => Column::Known(*c),
        None => Column::Other(name.replace('-', "_")),
    }
}

fn layout(names: &str) -> Vec<Column> {
    names.split_whitespace().map(column).collect()
}

/// Where the current layout came from; only the default layout may be replaced by a
/// documented one of the record's field count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayoutSource {
    Header,
    Configured,
    Default,
}

/// Parses flow log lines; remembers the layout named by the object's header line.
#[derive(Debug, Clone)]
pub struct VpcFlowParser {
    columns: Vec<Column>,
    source: LayoutSource,
    documented: Vec<Vec<Column>>,
}

impl VpcFlowParser {
    /// A parser for one object; `configured` is the field list for headerless custom
    /// formats (the rule option `vpc_flow_fields`). Entries may also be whole format
    /// strings as the EC2 API returns them (`${version} ${account-id} ...`).
    pub fn new(configured: Option<&[String]>) -> Self {
        let configured: Vec<Column> = configured
            .unwrap_or_default()
            .iter()
            .flat_map(|entry| entry.split_whitespace())
            .map(|name| name.trim_matches(|c| matches!(c, '$' | '{' | '}')))
            .filter(|name| !name.is_empty())
            .map(column)
            .collect();
        let (columns, source) = if configured.is_empty() {
            (layout(DEFAULT_FIELDS), LayoutSource::Default)
        } else {
            (configured, LayoutSource::Configured)
        };
        VpcFlowParser {
            columns,
            source,
            documented: DOCUMENTED_LAYOUTS.iter().map(|l| layout(l)).collect(),
        }
    }

    /// The layout for a record of `n` fields, or the field-count error.
    fn columns_for(&self, n: usize) -> Result<&[Column], RecordError> {
        if n == self.columns.len() {
            return Ok(&self.columns);
        }
        if self.source == LayoutSource::Default
            && let Some(cols) = self.documented.iter().find(|c| c.len() == n)
        {
            return Ok(cols);
        }
        Err(RecordError::FieldCount {
            expected: self.columns.len(),
            found: n,
        })
    }
}

/// A header line names fields: every token looks like a field name (lower-case letters,
/// digits and dashes, starting with a letter) and most are documented names. Data tokens
/// such as `eni-0abc` look like names too, but are never documented field names.
fn is_header(line: &str) -> bool {
    let mut total = 0;
    let mut known = 0;
    for token in line.split_whitespace() {
        let name_like = token.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_like {
            return false;
        }
        total += 1;
        if KNOWN.iter().any(|(n, _, _)| *n == token) {
            known += 1;
        }
    }
    total > 0 && known * 2 >= total
}

/// Text of a JSON scalar as it would appear in a plain-text record (`25238.0` -> `25238`,
/// `null` -> `-`); `None` for arrays and objects.
fn json_scalar(v: &serde_json::Value) -> Option<Cow<'_, str>> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => Cow::Borrowed("-"),
        J::String(s) => Cow::Borrowed(s.as_str()),
        J::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                Cow::Owned(u.to_string())
            } else if let Some(i) = n.as_i64() {
                Cow::Owned(i.to_string())
            } else {
                let f = n.as_f64()?;
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Cow::Owned(format!("{}", f as i64))
                } else {
                    Cow::Owned(n.to_string())
                }
            }
        }
        J::Array(_) | J::Object(_) => return None,
    })
}

/// The values of one record, by documented column, plus unknown columns.
struct Record<'a> {
    known: [&'a str; NKNOWN],
    others: Vec<(&'a str, &'a str)>,
}

impl<'a> Record<'a> {
    fn new() -> Self {
        Record {
            known: [""; NKNOWN],
            others: Vec::new(),
        }
    }

    fn put(&mut self, col: &'a Column, value: &'a str) {
        match col {
            Column::Known(c) => self.known[*c as usize] = value,
            Column::Other(name) => self.others.push((name, value)),
        }
    }

    fn get(&self, c: Col) -> Option<&'a str> {
        field(self.known[c as usize])
    }
}

/// Maps one record to ECS.
fn map_record(rec: &Record<'_>) -> Result<Event, RecordError> {
    let mut ev = Event::new();
    let get = |c: Col| rec.get(c);

    let start = util::epoch_secs_field(get(Col::Start), "start")?;
    let end = util::epoch_secs_field(get(Col::End), "end")?;
    // A record aggregates a capture window and is produced when the window closes:
    // `end` is when the event (the record) originated. See docs/ecs-mapping.md.
    util::set_capture_window(&mut ev, start.as_ref(), end.as_ref());
    util::set_flow_action(&mut ev, get(Col::Action));
    ev.set_str("event.reason", get(Col::RejectReason));
    ev.set("cloud.provider", "aws");

    let source_ip_version =
        util::set_ip_address(&mut ev, get(Col::SrcAddr), "source.address", "source.ip");
    util::set_ip_address(
        &mut ev,
        get(Col::DstAddr),
        "destination.address",
        "destination.ip",
    );
    ev.set_opt(
        "source.port",
        get(Col::SrcPort).and_then(|p| p.parse::<u16>().ok()),
    );
    ev.set_opt(
        "destination.port",
        get(Col::DstPort).and_then(|p| p.parse::<u16>().ok()),
    );
    for c in [Col::PktSrcAddr, Col::PktDstAddr] {
        if let Some(ip) = get(c).and_then(util::canonical_ip) {
            ev.push_unique("related.ip", ip);
        }
    }
    let network_type = get(Col::Type)
        .map(str::to_ascii_lowercase)
        .filter(|t| t == "ipv4" || t == "ipv6")
        .or_else(|| source_ip_version.map(str::to_owned));
    ev.set_opt("network.type", network_type);
    if let Some(proto) = get(Col::Protocol) {
        match proto.parse::<u64>() {
            Ok(n) => {
                ev.set("network.iana_number", n.to_string());
                ev.set_opt("network.transport", util::iana_transport(n));
            }
            Err(_) => return Err(RecordError::invalid("protocol", proto)),
        }
    }
    let packets = get(Col::Packets).and_then(util::uint);
    let bytes = get(Col::Bytes).and_then(util::uint);
    // A flow record is one direction (srcaddr to dstaddr): its counts are what the
    // source sent.
    ev.set_opt("source.packets", packets);
    ev.set_opt("source.bytes", bytes);
    ev.set_opt("network.packets", packets);
    ev.set_opt("network.bytes", bytes);
    if let Some(dir) = get(Col::FlowDirection) {
        let dir = dir.to_ascii_lowercase();
        if dir == "ingress" || dir == "egress" {
            ev.set("network.direction", dir);
        }
    }

    if let Some(account) = get(Col::AccountId).filter(|a| *a != "unknown") {
        ev.set("cloud.account.id", account.to_owned());
    }
    ev.set_str("cloud.instance.id", get(Col::InstanceId));
    ev.set_str("cloud.region", get(Col::Region));
    ev.set_str("cloud.availability_zone", get(Col::AzId));

    let ecs_cluster = get(Col::EcsClusterArn).or(get(Col::EcsClusterName));
    if ecs_cluster.is_some() {
        ev.set("orchestrator.type", "ecs");
    }
    ev.set_str("orchestrator.cluster.id", get(Col::EcsClusterArn));
    ev.set_str("orchestrator.cluster.name", get(Col::EcsClusterName));
    ev.set_str("orchestrator.resource.id", get(Col::EcsContainerInstanceId));
    ev.set_str(
        "orchestrator.resource.name",
        get(Col::EcsContainerInstanceArn),
    );
    ev.set_str("service.name", get(Col::EcsServiceName));
    ev.set_str("container.id", get(Col::EcsContainerId));

    for (value, &(_, path, col)) in rec.known.iter().zip(KNOWN) {
        let Some(value) = field(value) else {
            continue;
        };
        if MOVED_TO_ECS.contains(&col) {
            continue;
        }
        if COUNTERS.contains(&col)
            && let Some(n) = util::uint(value)
        {
            ev.set(path, n);
        } else {
            ev.set(path, value.to_owned());
        }
    }
    if let Some(flags) = get(Col::TcpFlags).and_then(util::uint) {
        let names: Vec<Value> = TCP_FLAGS
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, name)| Value::Static(name))
            .collect();
        if !names.is_empty() {
            ev.set("aws.vpcflow.tcp_flags_array", Value::Arr(names));
        }
    }
    for (name, value) in &rec.others {
        if let Some(v) = field(value) {
            ev.set_dyn("aws.vpcflow", name, (*v).to_owned());
        }
    }
    Ok(ev)
}

impl VpcFlowParser {
    fn parse_text(&mut self, line: &str, depth: u8) -> Result<Option<Event>, RecordError> {
        let trimmed = line.trim();
        if trimmed.starts_with('{') {
            return self.parse_json(trimmed, depth).map(Some);
        }
        if is_header(trimmed) {
            self.columns = layout(trimmed);
            self.source = LayoutSource::Header;
            return Ok(None);
        }
        let n = trimmed.split_whitespace().count();
        let columns = self.columns_for(n)?;
        let mut rec = Record::new();
        for (col, value) in columns.iter().zip(trimmed.split_whitespace()) {
            rec.put(col, value);
        }
        map_record(&rec).map(Some)
    }

    fn parse_json(&mut self, text: &str, depth: u8) -> Result<Event, RecordError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let serde_json::Value::Object(map) = value else {
            return Err(RecordError::Other("JSON record is not an object".into()));
        };
        if let Some(serde_json::Value::String(inner)) = map.get("message") {
            // `{"message":"<record>"}`: parse the wrapped record (once; no nesting).
            if depth > 0 {
                return Err(RecordError::Other("nested message wrapper".into()));
            }
            return match self.parse_text(inner, depth + 1)? {
                Some(ev) => Ok(ev),
                None => Err(RecordError::Other("wrapped header line".into())),
            };
        }
        // Structured form: keys are the field names with `_` for `-`.
        let mut columns = Vec::with_capacity(map.len());
        let mut values = Vec::with_capacity(map.len());
        for (k, v) in &map {
            let Some(text) = json_scalar(v) else {
                continue;
            };
            columns.push(column(&k.replace('_', "-")));
            values.push(text);
        }
        if !columns.iter().any(|c| matches!(c, Column::Known(_))) {
            return Err(RecordError::Other(
                "JSON object has no flow log fields".into(),
            ));
        }
        let mut rec = Record::new();
        for (col, value) in columns.iter().zip(values.iter()) {
            rec.put(col, value);
        }
        map_record(&rec)
    }
}

/// Maps one record given as (column name, value text) pairs: the entry point of the
/// Parquet reader ([`crate::columnar`]), whose columns are the field names with `_` for
/// `-`. Values are the text the plain format would carry (`-` or absent for null), so a
/// Parquet record goes through exactly the mapping of its text twin.
pub(crate) fn map_named_columns(pairs: &[(&str, &str)]) -> Result<Event, RecordError> {
    let columns: Vec<Column> = pairs
        .iter()
        .map(|(name, _)| column(&name.replace('_', "-")))
        .collect();
    if !columns.iter().any(|c| matches!(c, Column::Known(_))) {
        return Err(RecordError::Other("record has no flow log fields".into()));
    }
    let mut rec = Record::new();
    for (col, (_, value)) in columns.iter().zip(pairs) {
        rec.put(col, value);
    }
    map_record(&rec)
}

/// Whether `name` (a Parquet column, `_` for `-`) is a documented flow log field.
pub(crate) fn is_flow_column(name: &str) -> bool {
    let dashed = name.replace('_', "-");
    KNOWN.iter().any(|(n, _, _)| *n == dashed)
}

impl LineParser for VpcFlowParser {
    fn parse_line(&mut self, line: &str, _cx: &LineContext<'_>, out: &mut Vec<Event>) -> LineOutcome {
        match self.parse_text(line, 0)? {
            Some(ev) => {
                out.push(ev);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The rule option naming the columns of headerless custom flow logs.
const FIELDS_OPTION: &str = "vpc_flow_fields";

/// VPC (and Transit Gateway) flow logs: default, custom and header-driven layouts.
pub(crate) const SPEC: FormatSpec = FormatSpec {
    name: "vpc-flow",
    dataset: "aws.vpcflow",
    example_key: "AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/03/15/123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20240315T0000Z_a1b2c3d4.log.gz",
    key_clues: &[KeyClue {
        rank: 30,
        layout: "AWSLogs/<account>/vpcflowlogs/",
        // Also the Hive-compatible prefixes (`aws-account-id=…/aws-service=vpcflowlogs/…`).
        matches: |k| {
            k.lower.contains("/vpcflowlogs/")
                || k.file_name.contains("_vpcflowlogs_")
                || k.lower.contains("aws-service=vpcflowlogs/")
        },
    }],
    content_clues: &[
        ContentClue {
            rank: 20,
            what: "flow log header line",
            first_line: FirstLine::Text,
            matches: |line| {
                static HEADER: OnceLock<Option<Regex>> = OnceLock::new();
                regex_matches(
                    &HEADER,
                    r"^(version|account-id|interface-id|srcaddr|dstaddr|start|end|action|log-status|vpc-id)( [a-z0-9-]+){2,}$",
                    line,
                )
            },
        },
        ContentClue {
            rank: 30,
            what: "default flow log record",
            first_line: FirstLine::Text,
            matches: |line| {
                static V2: OnceLock<Option<Regex>> = OnceLock::new();
                regex_matches(&V2, r"^\d \d{12}|- (eni-[0-9a-f]+|-) ", line)
                    && line.split(' ').count() == 14
            },
        },
    ],
    skip: None,
    options: &[OptionSpec {
        name: FIELDS_OPTION,
        kind: OptionKind::StringList {
            example: "list the flow log fields in order, e.g. [\"version\", \"account-id\", ...]",
        },
    }],
    reader: Reader::Lines(|_, options| {
        Box::new(VpcFlowParser::new(
            options.format_options.strings(FIELDS_OPTION),
        ))
    }),
};

#[cfg(test)]
mod tests {
    use serde_json::json;
    use serde_json::Value as J;

    use crate::{Format, ParseOptions, ParseStats, assert_error_contains, assert_fields};

    const SAMPLE: &str = include_str!("../../../../tests/samples/vpc-flow.log");

    fn run_with(text: &str, opts: &ParseOptions) -> (Vec<J>, ParseStats) {
        let key = "AWSLogs/123456789012/vpcflowlogs/eu-west-1/2024/06/16/x.log.gz";
        let (out, stats) =
            crate::parse_object_for_test(Format::VpcFlow, &mut text.as_bytes(), "flow-logs", key, opts);
        (out.iter().map(crate::Event::to_json).collect(), stats)
    }

    fn run(text: &str) -> (Vec<J>, ParseStats) {
        run_with(text, &ParseOptions::default())
    }

    #[test]
    fn default_v2_record_without_header() {
        let (events, stats) = run(
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n",
        );
        assert_eq!((stats.records, stats.malformed), (1, 0));
        let e = &events[0];
        assert_fields(
            e,
            json!({
                "@timestamp": "2014-12-14T04:07:50Z",
                "event": {
                    "start": "2014-12-14T04:06:50Z",
                    "end": "2014-12-14T04:07:50Z",
                    "duration": 60_000_000_000u64,
                    "action": "ACCEPT",
                    "outcome": "success",
                    "type": ["connection", "allowed"],
                    "category": ["network"],
                    "dataset": "aws.vpcflow",
                },
                "source": {"ip": "172.31.16.139", "port": 20641, "packets": 20, "bytes": 4249},
                "destination": {"ip": "172.31.16.21", "port": 22},
                "network": {
                    "transport": "tcp",
                    "iana_number": "6",
                    "type": "ipv4",
                    "bytes": 4249,
                    "packets": 20,
                },
                "cloud": {"account": {"id": "123456789010"}},
                "related": {"ip": ["172.31.16.139", "172.31.16.21"]},
                "aws": {
                    "vpcflow": {
                        "interface_id": "eni-1235b8ca123456789",
                        "log_status": "OK",
                        "version": "2",
                    },
                },
            }),
        );
        // Mapped values are not duplicated under aws.vpcflow.
        assert!(e["aws"]["vpcflow"].get("srcaddr").is_none());
        assert!(e["aws"]["vpcflow"].get("start").is_none());
    }

    #[test]
    fn rejected_traffic_is_denied() {
        let (events, _) = run(
            "2 123456789010 eni-1235b8ca123456789 172.31.9.69 172.31.9.12 49761 3389 6 20 4249 1418530010 1418530070 REJECT OK\n",
        );
        assert_fields(
            &events[0],
            json!({
                "event": {"action": "REJECT", "outcome": "failure", "type": ["connection", "denied"]},
            }),
        );
    }

    #[test]
    fn nodata_and_skipdata_are_kept_without_bogus_addresses() {
        let (events, stats) = run(
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA\n2 123456789010 eni-11111111aaaaaaaaa - - - - - - - 1431280876 1431280934 - SKIPDATA\n",
        );
        assert_eq!((stats.events, stats.malformed), (2, 0));
        for (e, status) in events.iter().zip(["NODATA", "SKIPDATA"]) {
            assert_eq!(e["aws"]["vpcflow"]["log_status"], status);
            assert_eq!(e["@timestamp"], "2015-05-10T18:02:14Z");
            assert!(e.get("source").is_none(), "{e}");
            assert!(e.get("destination").is_none());
            assert!(e.get("related").is_none());
            assert!(e["event"].get("action").is_none());
            assert!(e["event"].get("outcome").is_none());
            assert!(e["network"].get("transport").is_none());
            assert_eq!(e["event"]["type"], serde_json::json!(["connection"]));
        }
    }

    #[test]
    fn header_line_names_the_columns_in_any_order() {
        // AWS's NAT gateway example layout: bytes before packets, pkt-* addresses.
        let text = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end action tcp-flags log-status\n\
3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 - eni-1235b8ca123456789 123456789010 IPv4 10.40.1.175 10.40.2.236 39812 80 10.20.33.164 10.40.2.236 6 3128 20 1566848875 1566848933 ACCEPT 18 OK\n";
        let (events, stats) = run(text);
        assert_eq!((stats.headers, stats.events, stats.malformed), (1, 1, 0));
        let e = &events[0];
        assert_fields(
            e,
            json!({
                "source": {"ip": "10.40.1.175", "bytes": 3128, "packets": 20},
                "aws": {
                    "vpcflow": {
                        "pkt_srcaddr": "10.20.33.164",
                        "vpc_id": "vpc-abcdefab012345678",
                        "tcp_flags": "18",
                        "tcp_flags_array": ["syn", "ack"],
                    },
                },
                "related": {"ip": ["10.40.1.175", "10.40.2.236", "10.20.33.164"]},
            }),
        );
        assert!(e["cloud"].get("instance").is_none());
    }

    #[test]
    fn v5_v8_fields_and_unknown_columns() {
        let text = "version account-id srcaddr dstaddr srcport dstport protocol start end action log-status region az-id flow-direction pkt-dst-aws-service traffic-path reject-reason ecs-cluster-name ecs-cluster-arn ecs-service-name ecs-container-id encryption-status\n\
8 123456789012 2001:0db8:0:0:0:0:0:1 2001:db8::2 443 50000 58 1718524800 1718524860 REJECT OK eu-west-1 euw1-az2 egress DYNAMODB 2 BPA web arn:aws:ecs:eu-west-1:123456789012:cluster/web checkout 0a1b2c3d-01 1\n";
        let (events, stats) = run(text);
        assert_eq!(stats.malformed, 0);
        let e = &events[0];
        // A field this parser does not know yet is kept, with `_` for `-`.
        assert_fields(
            e,
            json!({
                "source": {"ip": "2001:db8::1"},
                "network": {
                    "type": "ipv6",
                    "transport": "ipv6-icmp",
                    "iana_number": "58",
                    "direction": "egress",
                },
                "cloud": {"region": "eu-west-1", "availability_zone": "euw1-az2"},
                "event": {"reason": "BPA"},
                "aws": {
                    "vpcflow": {
                        "pkt_dst_aws_service": "DYNAMODB",
                        "traffic_path": "2",
                        "ecs_container_id": "0a1b2c3d-01",
                        "encryption_status": "1",
                    },
                },
                "orchestrator": {
                    "type": "ecs",
                    "cluster": {
                        "name": "web",
                        "id": "arn:aws:ecs:eu-west-1:123456789012:cluster/web",
                    },
                },
                "service": {"name": "checkout"},
                "container": {"id": "0a1b2c3d-01"},
            }),
        );
    }

    /// Parse options with `vpc_flow_fields` set as a configuration rule sets it.
    fn fields_option(fields: serde_json::Value) -> ParseOptions {
        ParseOptions {
            format_options: Format::VpcFlow
                .options_from([("vpc_flow_fields".to_owned(), fields)])
                .unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn configured_fields_apply_to_headerless_records_and_a_header_wins() {
        let opts = fields_option(serde_json::json!(["srcaddr", "dstaddr", "action", "end"]));
        let (events, stats) = run_with("192.0.2.1 192.0.2.2 ACCEPT 1718524860\n", &opts);
        assert_eq!(stats.malformed, 0);
        assert_eq!(events[0]["source"]["ip"], "192.0.2.1");
        assert_eq!(events[0]["@timestamp"], "2024-06-16T08:01:00Z");
        // The default 14-field layout does not apply when fields are configured.
        let (_, stats) = run_with(
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n",
            &opts,
        );
        assert_eq!(stats.malformed, 1);
        let (events, stats) = run_with(
            "dstaddr srcaddr action\n192.0.2.1 192.0.2.2 REJECT\n",
            &opts,
        );
        assert_eq!((stats.headers, stats.malformed), (1, 0));
        assert_eq!(events[0]["source"]["ip"], "192.0.2.2");
        assert!(events[0].get("@timestamp").is_none());
    }

    #[test]
    fn configured_fields_accept_the_ec2_log_format_syntax() {
        let opts = fields_option(serde_json::json!(["${srcaddr} ${dstaddr}", " ${action} "]));
        let (events, stats) = run_with("192.0.2.1 192.0.2.2 REJECT\n", &opts);
        assert_eq!(stats.malformed, 0);
        assert_eq!(events[0]["destination"]["ip"], "192.0.2.2");
        assert_eq!(events[0]["event"]["action"], "REJECT");
    }

    #[test]
    fn headerless_records_of_documented_complete_layouts() {
        // The Transit Gateway default format (36 fields).
        let tgw = "6 TransitGateway 123456789012 tgw-0a1b2c3d4e5f60718 tgw-attach-0123456789abcdef0 123456789012 210987654321 vpc-0abc1234def567890 vpc-0fed4321cba098765 subnet-0123456789abcdef0 subnet-0fedcba9876543210 eni-0a1b2c3d4e5f60718 eni-0f60718293a4b5c6d euw1-az1 euw1-az2 tgw-attach-0fedcba9876543210 10.0.1.15 10.1.2.30 49152 443 6 10 840 1718524800 1718524860 OK IPv4 0 3 0 0 2 eu-west-1 egress - -\n";
        let (events, stats) = run(tgw);
        assert_eq!(stats.malformed, 0, "{events:?}");
        let e = &events[0];
        assert_fields(
            e,
            json!({
                "source": {"ip": "10.0.1.15"},
                "destination": {"port": 443},
                "network": {"direction": "egress"},
                "aws": {
                    "vpcflow": {
                        "tgw_id": "tgw-0a1b2c3d4e5f60718",
                        "tgw_dst_vpc_id": "vpc-0fed4321cba098765",
                        "resource_type": "TransitGateway",
                        "packets_lost_blackhole": 3,
                    },
                },
                "cloud": {"region": "eu-west-1"},
            }),
        );
        // An undocumented count is a field-count error, forwarded raw.
        let (events, stats) = run("2 123456789010 eni-1235b8ca123456789 1.2.3.4 5.6.7.8\n");
        assert_eq!(stats.malformed, 1);
        assert_error_contains(&events[0], "expected 14 fields, found 5");
    }

    #[test]
    fn json_wrapped_and_structured_records() {
        let text = concat!(
            r#"{"message":"2 428961148399 eni-0e0bf7be352692297 10.0.0.5 10.0.0.6 443 40000 6 3 180 1671029698 1671029728 ACCEPT OK"}"#,
            "\n",
            r#"{"version":5,"account_id":"012345678901","interface_id":"eni-1235b8ca123456789","srcaddr":"192.0.2.9","dstaddr":"198.51.100.9","srcport":25238.0,"dstport":8080.0,"protocol":6.0,"packets":5.0,"bytes":412.0,"start":1726491185,"end":1726491211,"action":"ACCEPT","log_status":"OK","instance_id":"-","tcp_flags":3.0,"flow_direction":"ingress","traffic_path":null}"#,
            "\n",
        );
        let (events, stats) = run(text);
        assert_eq!((stats.events, stats.malformed), (2, 0));
        assert_eq!(events[0]["source"]["ip"], "10.0.0.5");
        assert_eq!(events[0]["@timestamp"], "2022-12-14T14:55:28Z");
        let e = &events[1];
        assert_eq!(e["source"]["port"], 25238);
        assert_eq!(e["network"]["iana_number"], "6");
        assert_eq!(e["source"]["bytes"], 412);
        assert_eq!(
            e["aws"]["vpcflow"]["tcp_flags_array"],
            serde_json::json!(["fin", "syn"])
        );
        assert_eq!(e["network"]["direction"], "ingress");
        assert!(e["cloud"].get("instance").is_none());
        assert!(e["aws"]["vpcflow"].get("traffic_path").is_none());
    }

    #[test]
    fn malformed_records_are_forwarded_raw_and_never_panic() {
        let lines = [
            "2 123456789010 eni-1 172.31.16.139 172.31.16.21 20641 22 6 20 4249 yesterday 1418530070 ACCEPT OK",
            "2 123456789010 eni-1 172.31.16.139 172.31.16.21 20641 22 tcp 20 4249 1418530010 1418530070 ACCEPT OK",
            r#"{"message":"2 123456789010 eni-1"#,
            r#"[1,2,3]"#,
            r#"{"foo":"bar"}"#,
            r#"{"message":{"nested":true}}"#,
            r#"{"message":"{\"message\":\"x\"}"}"#,
            "\u{0}\u{1} garbage",
        ];
        let events = crate::each_line_malformed(run, &lines);
        assert_error_contains(&events[0], "invalid start");
    }

    #[test]
    fn header_detection_does_not_swallow_records() {
        assert!(super::is_header("version account-id interface-id"));
        assert!(super::is_header("srcaddr dstaddr some-new-field"));
        assert!(!super::is_header("eni-0abc vpc-0def"));
        assert!(!super::is_header(
            "2 123456789010 eni-1 - - - - - - - 1 2 - NODATA"
        ));
        assert!(!super::is_header("   "));
    }

    #[test]
    fn sample_file_parses_cleanly() {
        let (events, stats) = run(SAMPLE);
        assert_eq!((stats.headers, stats.malformed), (1, 0));
        assert_eq!(events.len(), 10);
        let statuses: Vec<&str> = events
            .iter()
            .map(|e| e["aws"]["vpcflow"]["log_status"].as_str().unwrap())
            .collect();
        assert!(statuses.contains(&"NODATA") && statuses.contains(&"SKIPDATA"));
        assert!(events.iter().any(|e| e["network"]["type"] == "ipv6"));
        assert!(events.iter().any(|e| e["network"]["transport"] == "icmp"));
    }
}
