//! `[[processing.drop]]`: events users do not want to pay for (CloudTrail read-only
//! calls, accepted VPC flows of one subnet), dropped after parsing and before
//! serialization, and always counted: per rule in `alf_events_dropped_total{rule}` and
//! in the per-object log line, so a rule that drops more than meant shows at once.
//!
//! A rule names a dataset (`aws.cloudtrail`, as in `event.dataset`) and one condition on
//! one field of the ECS event (a dotted path such as `aws.cloudtrail.read_only`):
//! `equals`, `prefix`, `regex` (unanchored, Rust syntax), or a numeric `gt`/`lt` (both
//! together: a range). Numbers and booleans compare by their JSON text for `equals`,
//! `prefix` and `regex` (`equals = "true"`); `gt`/`lt` read numbers and numeric strings.
//! A field the event lacks matches nothing. The first matching rule counts the drop.

use alf_formats::Event;
use alf_formats::event::Value;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Prometheus counter of dropped events, labelled by rule name.
pub const EVENTS_DROPPED: &str = "alf_events_dropped_total";

/// One rule as configured (`check-config` leaves its unset tests out, as
/// [`crate::config::Config::masked`] drops every null).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropRuleSettings {
    /// Label in metrics and logs; default `drop[<index>]`.
    pub name: String,
    /// `event.dataset` the rule applies to.
    pub dataset: String,
    /// Dotted path of the ECS field tested.
    pub field: String,
    pub equals: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
    pub gt: Option<f64>,
    pub lt: Option<f64>,
}

/// A rule that cannot be used (reported as a configuration error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "{0}: give exactly one condition: equals, prefix, regex, or gt and/or lt (a numeric range)"
    )]
    Conditions(String),
    #[error("{rule}.regex: {reason}")]
    Regex { rule: String, reason: String },
    #[error(
        "{0}: dataset and field are required (e.g. dataset = \"aws.cloudtrail\", field = \"aws.cloudtrail.read_only\")"
    )]
    Incomplete(String),
    #[error("{rule}: the name {name:?} is used by another rule; names label the metrics")]
    DuplicateName { rule: String, name: String },
}

#[derive(Debug, Clone)]
enum Condition {
    Equals(String),
    Prefix(String),
    Regex(Regex),
    Range { gt: Option<f64>, lt: Option<f64> },
}

#[derive(Debug, Clone)]
struct DropRule {
    dataset: String,
    field: String,
    condition: Condition,
}

/// The compiled rules, shared by every parsing thread.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    rules: Vec<DropRule>,
    names: Vec<String>,
}

impl EventFilter {
    /// Compiles `settings`; `key` is the configuration path for errors
    /// (`processing.drop`).
    pub fn new(settings: &[DropRuleSettings]) -> Result<Self, FilterError> {
        let mut filter = EventFilter::default();
        for (i, rule) in settings.iter().enumerate() {
            let at = format!("processing.drop[{i}]");
            if rule.dataset.trim().is_empty() || rule.field.trim().is_empty() {
                return Err(FilterError::Incomplete(at));
            }
            let text_conditions = [&rule.equals, &rule.prefix, &rule.regex]
                .iter()
                .filter(|c| c.is_some())
                .count();
            let numeric = rule.gt.is_some() || rule.lt.is_some();
            if text_conditions + usize::from(numeric) != 1 {
                return Err(FilterError::Conditions(at));
            }
            let condition = if let Some(v) = &rule.equals {
                Condition::Equals(v.clone())
            } else if let Some(v) = &rule.prefix {
                Condition::Prefix(v.clone())
            } else if let Some(v) = &rule.regex {
                Condition::Regex(Regex::new(v).map_err(|e| FilterError::Regex {
                    rule: at.clone(),
                    reason: e.to_string().lines().last().unwrap_or_default().to_owned(),
                })?)
            } else {
                Condition::Range {
                    gt: rule.gt,
                    lt: rule.lt,
                }
            };
            let name = if rule.name.trim().is_empty() {
                format!("drop[{i}]")
            } else {
                rule.name.trim().to_owned()
            };
            if filter.names.contains(&name) {
                return Err(FilterError::DuplicateName { rule: at, name });
            }
            filter.names.push(name);
            filter.rules.push(DropRule {
                dataset: rule.dataset.trim().to_owned(),
                field: rule.field.trim().to_owned(),
                condition,
            });
        }
        Ok(filter)
    }

    /// Rule names, by index (metric labels).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index of the first rule that drops `event`.
    pub fn matching(&self, event: &Event) -> Option<usize> {
        if self.rules.is_empty() {
            return None;
        }
        let dataset = event.get_str("event.dataset")?;
        self.rules
            .iter()
            .position(|rule| rule.dataset == dataset && rule.matches(event))
    }

    /// Whether a rule drops `event`; when one does, counts it in `dropped` (by rule, as
    /// [`EventFilter::record`] reads them). Both the object's sink and the block
    /// workers' sink decide through this.
    pub fn drops(&self, event: &Event, dropped: &mut [u64]) -> bool {
        let Some(rule) = self.matching(event) else {
            return false;
        };
        if let Some(n) = dropped.get_mut(rule) {
            *n += 1;
        }
        true
    }

    /// Adds one object's drops to the metric; `None` when nothing was dropped, else
    /// `rule=count` pairs for the object's log line.
    pub fn record(&self, dropped: &[u64]) -> Option<String> {
        let mut parts = Vec::new();
        for (name, n) in self.names.iter().zip(dropped) {
            if *n > 0 {
                metrics::counter!(EVENTS_DROPPED, "rule" => name.clone()).increment(*n);
                parts.push(format!("{name}={n}"));
            }
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

impl DropRule {
    fn matches(&self, event: &Event) -> bool {
        let Some(value) = event.get(&self.field) else {
            return false;
        };
        match &self.condition {
            Condition::Equals(want) => text(value).is_some_and(|t| t == *want),
            Condition::Prefix(want) => text(value).is_some_and(|t| t.starts_with(want.as_str())),
            Condition::Regex(re) => text(value).is_some_and(|t| re.is_match(&t)),
            Condition::Range { gt, lt } => {
                number(value).is_some_and(|n| gt.is_none_or(|g| n > g) && lt.is_none_or(|l| n < l))
            }
        }
    }
}

/// A scalar's text: strings as they are, numbers and booleans as in JSON.
fn text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    match value {
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::I64(n) => Some(Cow::Owned(n.to_string())),
        Value::U64(n) => Some(Cow::Owned(n.to_string())),
        Value::F64(n) => Some(Cow::Owned(n.to_string())),
        Value::Json(serde_json::Value::String(s)) => Some(Cow::Borrowed(s)),
        Value::Json(j @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => {
            Some(Cow::Owned(j.to_string()))
        }
        Value::Doc(doc) => doc
            .as_str()
            .map(Cow::Borrowed)
            .or_else(|| doc.scalar_text().map(Cow::Owned)),
        other => other.as_str().map(Cow::Borrowed),
    }
}

fn number(value: &Value) -> Option<f64> {
    let exact = match value {
        Value::I64(n) => Some(*n as f64),
        Value::U64(n) => Some(*n as f64),
        Value::F64(n) => Some(*n),
        Value::Json(serde_json::Value::Number(n)) => n.as_f64(),
        Value::Doc(doc) => doc.as_f64(),
        _ => None,
    };
    exact.or_else(|| text(value).and_then(|t| t.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(dataset: &str, field: &str) -> DropRuleSettings {
        DropRuleSettings {
            dataset: dataset.into(),
            field: field.into(),
            ..Default::default()
        }
    }

    fn cloudtrail(read_only: bool, action: &str) -> Event {
        let mut e = Event::new();
        e.set("event.dataset", "aws.cloudtrail");
        e.set("aws.cloudtrail.read_only", read_only);
        e.set("event.action", action.to_owned());
        e
    }

    fn flow(action: &str, subnet: &str, bytes: u64) -> Event {
        let mut e = Event::new();
        e.set("event.dataset", "aws.vpcflow");
        e.set("event.action", action.to_owned());
        e.set("aws.vpcflow.subnet_id", subnet.to_owned());
        e.set("destination.bytes", bytes);
        e
    }

    #[test]
    fn each_condition_drops_what_it_says_in_its_dataset_only() {
        let filter = EventFilter::new(&[
            DropRuleSettings {
                name: "cloudtrail-read-only".into(),
                equals: Some("true".into()),
                ..rule("aws.cloudtrail", "aws.cloudtrail.read_only")
            },
            DropRuleSettings {
                prefix: Some("Describe".into()),
                ..rule("aws.cloudtrail", "event.action")
            },
            DropRuleSettings {
                regex: Some("^subnet-0(aa|bb)$".into()),
                ..rule("aws.vpcflow", "aws.vpcflow.subnet_id")
            },
            DropRuleSettings {
                gt: Some(100.0),
                lt: Some(1000.0),
                ..rule("aws.vpcflow", "destination.bytes")
            },
        ])
        .unwrap();
        assert_eq!(filter.names()[0], "cloudtrail-read-only");
        assert_eq!(filter.names()[1], "drop[1]");
        assert_eq!(filter.matching(&cloudtrail(true, "GetObject")), Some(0));
        assert_eq!(filter.matching(&cloudtrail(false, "DescribeVpcs")), Some(1));
        assert_eq!(filter.matching(&cloudtrail(false, "RunInstances")), None);
        assert_eq!(filter.matching(&flow("accept", "subnet-0aa", 5)), Some(2));
        assert_eq!(filter.matching(&flow("accept", "subnet-0aab", 5)), None);
        assert_eq!(filter.matching(&flow("accept", "subnet-1", 500)), Some(3));
        assert_eq!(
            filter.matching(&flow("accept", "subnet-1", 100)),
            None,
            "gt is strict"
        );
        assert_eq!(filter.matching(&flow("accept", "subnet-1", 5000)), None);
        // Another dataset with the same field is untouched.
        let mut other = cloudtrail(true, "GetObject");
        other.set("event.dataset", "aws.guardduty");
        assert_eq!(filter.matching(&other), None);
        // A missing field matches nothing.
        let mut bare = Event::new();
        bare.set("event.dataset", "aws.cloudtrail");
        assert_eq!(filter.matching(&bare), None);
    }

    #[test]
    fn bad_rules_are_one_line_errors() {
        let e = EventFilter::new(&[rule("aws.cloudtrail", "event.action")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("processing.drop[0]: give exactly one condition")
        );
        let e = EventFilter::new(&[DropRuleSettings {
            equals: Some("x".into()),
            prefix: Some("y".into()),
            ..rule("aws.cloudtrail", "event.action")
        }])
        .unwrap_err();
        assert!(matches!(e, FilterError::Conditions(_)));
        let e = EventFilter::new(&[DropRuleSettings {
            regex: Some("(".into()),
            ..rule("aws.cloudtrail", "event.action")
        }])
        .unwrap_err();
        assert!(
            e.to_string().starts_with("processing.drop[0].regex: "),
            "{e}"
        );
        let e = EventFilter::new(&[DropRuleSettings {
            equals: Some("x".into()),
            ..rule("", "event.action")
        }])
        .unwrap_err();
        assert!(matches!(e, FilterError::Incomplete(_)));
        let named = DropRuleSettings {
            name: "same".into(),
            equals: Some("x".into()),
            ..rule("aws.cloudtrail", "event.action")
        };
        let e = EventFilter::new(&[named.clone(), named]).unwrap_err();
        assert!(e.to_string().contains("used by another rule"), "{e}");
    }
}
