//! CloudWatch Logs delivered by a subscription filter through Amazon Data Firehose:
//! `DATA_MESSAGE` documents written back to back without a separator, as Firehose
//! writes them (the daemon sees them after removing Firehose's gzip). Each document
//! holds up to [`EVENTS_PER_DOCUMENT`] log events of one log group: Lambda platform and
//! application lines, API Gateway JSON access logs, or an ECS service's JSON logs. A
//! record is one log event.

use std::fmt::Write;

use super::LogWriter;
use super::json;
use super::owned;
use crate::clock::Clock;
use crate::pools;
use crate::rng::Rng;

/// Log events per subscription document (CloudWatch batches a few to a few hundred).
pub const EVENTS_PER_DOCUMENT: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Lambda,
    ApiGateway,
    Ecs,
}

#[derive(Debug, Default)]
pub struct CloudWatchFirehose {
    group: Option<Group>,
    request_id: String,
}

impl CloudWatchFirehose {
    fn open(&mut self, index: u64, rng: &mut Rng, out: &mut String) {
        let group = rng.weighted(&[
            (50, Group::Lambda),
            (30, Group::ApiGateway),
            (20, Group::Ecs),
        ]);
        self.group = Some(group);
        let account = rng.pick(pools::ACCOUNTS);
        let (name, stream) = match group {
            Group::Lambda => (
                format!(
                    "/aws/lambda/{}",
                    rng.pick(&["checkout", "orders-api", "thumbnailer"])
                ),
                format!("2024/03/15/[$LATEST]{}", rng.hex_string(32)),
            ),
            Group::ApiGateway => (
                "API-Gateway-Access-Logs_a1b2c3d4e5/prod".to_owned(),
                "a1b2c3d4e5_prod".to_owned(),
            ),
            Group::Ecs => (
                "/aws/ecs/orders-service".to_owned(),
                format!("ecs/orders/{}", rng.hex_string(32)),
            ),
        };
        let _ = write!(
            out,
            r#"{{"messageType":"DATA_MESSAGE","owner":"{account}","logGroup":"{name}","logStream":"{stream}","subscriptionFilters":["to-firehose-{index}"],"logEvents":["#
        );
    }

    fn message(&mut self, rng: &mut Rng, clock: &Clock, out: &mut String) {
        let iso = owned(|s| clock.iso_millis(s));
        match self.group {
            Some(Group::Lambda) => {
                if self.request_id.is_empty() || rng.chance(20) {
                    self.request_id.clear();
                    pools::uuid(rng, &mut self.request_id);
                }
                let id = &self.request_id;
                let text = match rng.below(4) {
                    0 => format!("START RequestId: {id} Version: $LATEST\n"),
                    1 => format!(
                        "REPORT RequestId: {id}\tDuration: {}.{:02} ms\tBilled Duration: {} ms\tMemory Size: 256 MB\tMax Memory Used: {} MB\t\n",
                        rng.range(1, 900),
                        rng.below(100),
                        rng.range(2, 901),
                        rng.range(60, 250)
                    ),
                    2 => format!(
                        "{iso}\t{id}\tINFO\tprocessed order {} in {} ms\n",
                        rng.range(1000, 99999),
                        rng.range(1, 500)
                    ),
                    _ => format!(
                        r#"{{"timestamp":"{iso}","level":"{}","message":"payment provider answered {}","requestId":"{id}"}}"#,
                        rng.pick(&["INFO", "WARN", "ERROR"]),
                        rng.pick(&[200u32, 402, 503])
                    ),
                };
                json::string(out, &text);
            }
            Some(Group::ApiGateway) => {
                let mut ip = String::with_capacity(40);
                pools::client_ip(rng, &mut ip, 10);
                let id = owned(|s| pools::uuid(rng, s));
                let text = format!(
                    r#"{{"requestId":"{id}","ip":"{ip}","caller":"-","user":"-","requestTimeEpoch":{},"httpMethod":"{}","resourcePath":"/pets/{{petId}}","path":"/prod/pets/{}","status":"{}","protocol":"HTTP/1.1","responseLength":"{}","userAgent":"{}"}}"#,
                    clock.epoch_millis(),
                    rng.pick(&["GET", "GET", "POST", "DELETE"]),
                    rng.range(1, 5000),
                    rng.pick(&[200u32, 200, 201, 403, 404, 500]),
                    rng.range(20, 20000),
                    rng.weighted(pools::USER_AGENTS)
                );
                json::string(out, &text);
            }
            _ => {
                let text = format!(
                    r#"{{"time":"{iso}","level":"{}","msg":"{}","pool":"primary","waiters":{}}}"#,
                    rng.pick(&["INFO", "WARN", "ERROR"]),
                    rng.pick(&[
                        "request served",
                        "cache miss",
                        "database connection pool exhausted"
                    ]),
                    rng.below(20)
                );
                json::string(out, &text);
            }
        }
    }
}

impl LogWriter for CloudWatchFirehose {
    fn record(&mut self, index: u64, rng: &mut Rng, clock: &mut Clock, out: &mut String) {
        clock.tick(rng, 20_000);
        let position = index % EVENTS_PER_DOCUMENT;
        if position == 0 {
            if self.group.is_some() {
                out.push_str("]}");
            }
            self.open(index, rng, out);
        } else {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"id":"{}{:020}","timestamp":{},"message":"#,
            37_870_403_290_143_431u64,
            index,
            clock.epoch_millis()
        );
        self.message(rng, clock, out);
        out.push('}');
    }

    fn end(&mut self, out: &mut String) {
        if self.group.is_some() {
            out.push_str("]}");
        }
    }
}
