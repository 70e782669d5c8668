//! Several intakes in one process: `[intake]` (the default) plus `[[intakes]]`
//! entries, each receiving the events of the datasets it names, as normalised ECS
//! events (`payload = "ecs"`) or as the records AWS wrote (`payload = "raw"`, for
//! Sekoia.io's per-type intakes, which parse the AWS format themselves).
//!
//! Routing happens where events are serialized ([`crate::pipeline`]): each event is
//! written in its intake's payload mode into a chunk for that intake (a chunk holds
//! consecutive events of one object for one intake, so the object's watermark still
//! sees contiguous runs). A dispatcher hands each chunk to its intake's own batcher,
//! client and circuit; an object's acknowledgement settles once every event was
//! accepted by whichever intake it was routed to, so a message is deleted only when
//! all its intakes accepted their share.
//!
//! `raw` needs the record text: the parsers keep it as `event.original` when asked
//! ([`IntakeRoutes::needs_original`] turns that on); an ECS intake then gets the event
//! without it unless `processing.keep_original` asked for it, so its bytes do not change.

use std::collections::HashMap;
use std::sync::Arc;

use alf_formats::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batch::{BatcherLimits, EventChunk, run_batcher};
use crate::circuit::IntakeCircuits;
use crate::config::{Config, PayloadMode};
use crate::deadletter::DeadLetterSink;
use crate::intake::{IntakeClient, IntakeError};

/// Which intake (index into the configured intakes, 0 = `[intake]`) an event goes to,
/// and in which form.
#[derive(Debug, Clone)]
pub struct IntakeRoutes {
    by_dataset: HashMap<String, usize>,
    payloads: Vec<PayloadMode>,
    /// Remove `event.original` from ECS payloads (it was only kept for raw intakes).
    strip_original: bool,
}

impl Default for IntakeRoutes {
    fn default() -> Self {
        Self::single()
    }
}

impl IntakeRoutes {
    /// One ECS intake: everything goes to it, unchanged.
    pub fn single() -> Self {
        IntakeRoutes {
            by_dataset: HashMap::new(),
            payloads: vec![PayloadMode::Ecs],
            strip_original: false,
        }
    }

    /// The routes `[intake]` and `[[intakes]]` describe (validated by the config).
    pub fn from_config(config: &Config) -> Self {
        let mut by_dataset = HashMap::new();
        let mut payloads = vec![config.intake.payload];
        for (i, named) in config.intakes.iter().enumerate() {
            payloads.push(named.settings.payload);
            for dataset in &named.datasets {
                by_dataset.insert(dataset.trim().to_owned(), i + 1);
            }
        }
        let any_raw = payloads.contains(&PayloadMode::Raw);
        IntakeRoutes {
            by_dataset,
            payloads,
            strip_original: any_raw && !config.processing.keep_original,
        }
    }

    /// Whether the parsers must keep each record's text (`event.original`).
    pub fn needs_original(&self) -> bool {
        self.payloads.contains(&PayloadMode::Raw)
    }

    /// The intake for an event of `dataset` (the default for datasets no entry names).
    pub fn route_of(&self, dataset: Option<&str>) -> usize {
        if self.by_dataset.is_empty() {
            return 0;
        }
        dataset
            .and_then(|d| self.by_dataset.get(d))
            .copied()
            .unwrap_or(0)
    }

    /// The intake `event` goes to.
    pub fn route(&self, event: &Event) -> usize {
        if self.by_dataset.is_empty() {
            return 0;
        }
        self.route_of(event.get_str("event.dataset"))
    }

    /// Writes `event`'s payload for intake `route` into `out`.
    ///
    /// A raw intake gets `event.original`, redacted like every emitted string
    /// (presigned-URL signatures and session tokens in a CloudFront or S3 access line
    /// must not reach the SIEM because the intake wants the record as AWS wrote it);
    /// an event without one (the forwarder's own `aws_log_forwarder.pipeline` events
    /// routed there) goes as ECS JSON rather than not at all.
    pub fn write(
        &self,
        route: usize,
        mut event: Event,
        redactor: Option<&alf_formats::Redactor>,
        out: &mut Vec<u8>,
    ) {
        let payload = self
            .payloads
            .get(route)
            .copied()
            .unwrap_or(PayloadMode::Ecs);
        if payload == PayloadMode::Raw
            && let Some(original) = event.get_str("event.original")
        {
            match redactor {
                Some(r) => out.extend_from_slice(r.redact(original).as_bytes()),
                None => out.extend_from_slice(original.as_bytes()),
            }
            return;
        }
        // A record that could not be parsed keeps its text in ECS too: it is all there is.
        if self.strip_original && event.get_str("error.type") != Some("parse_error") {
            event.remove("event.original");
        }
        event.write_json(out, redactor);
    }
}

/// The running intakes: one batcher per intake behind one channel.
pub struct StartedIntakes {
    /// Where the pipeline sends its chunks (routed by [`EventChunk::route`]).
    pub events: mpsc::Sender<EventChunk>,
    /// Ends when every batcher ended (after the senders were dropped, or on abort).
    pub batchers: JoinHandle<()>,
    pub circuits: Arc<IntakeCircuits>,
    pub clients: Vec<Arc<IntakeClient>>,
    pub routes: Arc<IntakeRoutes>,
}

/// Builds a client per configured intake (sharing `dead_letter`) and starts their
/// batchers. Each channel holds two chunks per object parsed at once
/// (`processing.object_concurrency`): enough to keep the batchers fed, bounded so a
/// slow intake holds the parsers back. (Four were 11 MB of a large object's 56 MB heap
/// peak, for no gain in wall time.)
pub fn start(
    config: &Config,
    dead_letter: Option<Arc<DeadLetterSink>>,
    abort: &CancellationToken,
) -> Result<StartedIntakes, IntakeError> {
    let channel = config
        .processing
        .object_concurrency
        .saturating_mul(2)
        .max(1);
    let mut clients = Vec::with_capacity(1 + config.intakes.len());
    let mut limits = Vec::with_capacity(1 + config.intakes.len());
    let settings = std::iter::once((None, &config.intake))
        .chain(config.intakes.iter().map(|n| (Some(&n.name), &n.settings)));
    for (name, intake) in settings {
        let mut client = IntakeClient::new(intake)?;
        if let Some(name) = name {
            client = client.with_name(name);
        }
        if let Some(sink) = &dead_letter {
            client = client.with_dead_letter(Arc::clone(sink));
        }
        clients.push(Arc::new(client));
        limits.push(BatcherLimits::new(
            &config.batch,
            intake.max_concurrent_requests,
        ));
    }
    let circuits = Arc::new(IntakeCircuits::new(
        clients.iter().map(|c| Arc::clone(c.circuit())).collect(),
    ));
    let routes = Arc::new(IntakeRoutes::from_config(config));
    let (events, rx) = mpsc::channel(channel);
    let batchers = if clients.len() == 1 {
        tokio::spawn(run_batcher(
            rx,
            limits.remove(0),
            Arc::clone(&clients[0]),
            abort.clone(),
        ))
    } else {
        let mut senders = Vec::with_capacity(clients.len());
        let mut handles = Vec::with_capacity(clients.len());
        for (client, limits) in clients.iter().zip(limits) {
            let (tx, rx) = mpsc::channel(channel);
            senders.push(tx);
            handles.push(tokio::spawn(run_batcher(
                rx,
                limits,
                Arc::clone(client),
                abort.clone(),
            )));
        }
        tokio::spawn(async move {
            dispatch(rx, senders).await;
            futures::future::join_all(handles).await;
        })
    };
    Ok(StartedIntakes {
        events,
        batchers,
        circuits,
        clients,
        routes,
    })
}

/// Hands each chunk to its intake's batcher. A chunk that cannot be handed over (its
/// batcher is gone: shutdown) is dropped, which fails its object's acknowledgement.
async fn dispatch(mut rx: mpsc::Receiver<EventChunk>, senders: Vec<mpsc::Sender<EventChunk>>) {
    while let Some(chunk) = rx.recv().await {
        let Some(tx) = senders.get(chunk.route).or_else(|| senders.first()) else {
            return;
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "[sqs]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\n[intake]\nurl = \"https://intake.sekoia.io\"\nkey = \"k\"\n{extra}"
        ))
        .unwrap()
    }

    fn event(dataset: &str, original: &str) -> Event {
        let mut e = Event::new();
        e.set("event.dataset", dataset.to_owned());
        e.set("event.original", original.to_owned());
        e.set("source.ip", "10.0.0.1");
        e
    }

    #[test]
    fn raw_payloads_are_redacted_like_every_emitted_string() {
        let c = config(
            "[[intakes]]\nname = \"cloudfront\"\ndatasets = [\"aws.cloudfront\"]\nurl = \"https://intake.eu2.sekoia.io\"\nkey = \"k2\"\npayload = \"raw\"\n",
        );
        let routes = IntakeRoutes::from_config(&c);
        let line = "2024-01-01\t00:00:00\tFRA\t/file.pdf\tX-Amz-Signature=0123abcd&X-Amz-Security-Token=FwoGZXIvYXdz&a=b";
        let e = event("aws.cloudfront", line);
        let route = routes.route(&e);
        let redactor = alf_formats::Redactor::new();
        let mut out = Vec::new();
        routes.write(route, e.clone(), Some(&redactor), &mut out);
        let sent = String::from_utf8(out).unwrap();
        assert!(
            sent.starts_with("2024-01-01\t00:00:00\tFRA\t/file.pdf\t"),
            "{sent}"
        );
        assert!(
            !sent.contains("0123abcd") && !sent.contains("FwoGZXIvYXdz") && sent.ends_with("&a=b"),
            "{sent}"
        );
        let mut plain = Vec::new();
        routes.write(route, e, None, &mut plain);
        assert_eq!(
            plain,
            line.as_bytes(),
            "processing.redact = false sends it as is"
        );
    }

    #[test]
    fn routes_by_dataset_with_raw_and_ecs_payloads() {
        let c = config(
            "[[intakes]]\nname = \"cloudfront\"\ndatasets = [\"aws.cloudfront\"]\nurl = \"https://intake.eu2.sekoia.io\"\nkey = \"k2\"\npayload = \"raw\"\n",
        );
        let routes = IntakeRoutes::from_config(&c);
        assert!(routes.needs_original());
        let mut out = Vec::new();
        let e = event("aws.cloudfront", "2024-01-01\t00:00:00\tFRA");
        let route = routes.route(&e);
        routes.write(route, e, None, &mut out);
        assert_eq!(
            (route, out.as_slice()),
            (1, b"2024-01-01\t00:00:00\tFRA".as_slice())
        );
        out.clear();
        let e = event("aws.vpcflow", "2 123 eni-1");
        let route = routes.route(&e);
        routes.write(route, e, None, &mut out);
        assert_eq!(route, 0);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["source"]["ip"], "10.0.0.1");
        assert!(
            json["event"].get("original").is_none(),
            "kept only for the raw intake: {json}"
        );
    }

    #[test]
    fn a_single_ecs_intake_writes_the_event_unchanged() {
        let routes = IntakeRoutes::from_config(&config(""));
        assert!(!routes.needs_original());
        let e = event("aws.cloudtrail", "{}");
        let mut expected = Vec::new();
        e.write_json(&mut expected, None);
        let mut out = Vec::new();
        assert_eq!(routes.route(&e), 0);
        routes.write(0, e, None, &mut out);
        assert_eq!(out, expected);
    }

    #[test]
    fn an_unparsed_record_keeps_its_text_in_ecs_and_keep_original_is_honoured() {
        let c = config(
            "[processing]\nkeep_original = true\n[[intakes]]\nname = \"ct\"\ndatasets = [\"aws.cloudtrail\"]\nurl = \"https://intake.sekoia.io\"\nkey = \"k2\"\npayload = \"raw\"\n",
        );
        let routes = IntakeRoutes::from_config(&c);
        let mut out = Vec::new();
        routes.write(0, event("aws.s3access", "line"), None, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("\"original\":\"line\""));
        let routes = IntakeRoutes::from_config(&config(
            "[[intakes]]\nname = \"ct\"\ndatasets = [\"aws.cloudtrail\"]\nurl = \"https://intake.sekoia.io\"\nkey = \"k2\"\npayload = \"raw\"\n",
        ));
        let mut bad = event("aws.s3access", "garbage");
        bad.set("error.type", "parse_error");
        out.clear();
        routes.write(0, bad, None, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("\"original\":\"garbage\""));
    }

    #[test]
    fn regional_sekoia_urls_post_to_their_batch_endpoint() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        for (configured, posted) in [
            ("https://intake.sekoia.io", "https://intake.sekoia.io/batch"),
            (
                "https://intake.usa1.sekoia.io/api/v1/intake-http",
                "https://intake.usa1.sekoia.io/api/v1/intake-http/batch",
            ),
            (
                "https://intake.usa1.sekoia.io/api/v1/intake-http/batch",
                "https://intake.usa1.sekoia.io/api/v1/intake-http/batch",
            ),
        ] {
            let endpoint =
                crate::intake::endpoint(&url(configured), crate::config::IntakeProtocol::Sekoia);
            assert_eq!(endpoint.as_str(), posted);
        }
    }

    #[test]
    fn intake_entries_are_checked_like_the_default_one() {
        let base = "[sqs]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/q\"\n[intake]\nurl = \"https://intake.sekoia.io\"\nkey = \"k\"\n";
        let errors = |extra: &str| match Config::from_toml_str(&format!("{base}{extra}")) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => e.to_string(),
        };
        // Each configuration and every error it must produce.
        let cases: [(&str, &[&str]); 3] = [
            (
                "[[intakes]]\nname = \"ct\"\ndatasets = [\"aws.cloudtrail\"]\nurl = \"https://x\"\n",
                &["intakes[0].key: required"],
            ),
            (
                "[[intakes]]\nname = \"a\"\ndatasets = [\"aws.cloudtrail\"]\nurl = \"https://x\"\nkey = \"k\"\n[[intakes]]\nname = \"a\"\ndatasets = [\"aws.cloudtrail\"]\nurl = \"https://y\"\nkey = \"k\"\nprotocol = \"elasticsearch\"\npayload = \"raw\"\n",
                &[
                    "intakes[1].name: \"a\" names two intakes",
                    "intakes[1].datasets: aws.cloudtrail is already routed to intake \"a\"",
                    "intakes[1].payload: raw records",
                ],
            ),
            (
                "[[intakes]]\nname = \"default\"\ndatasets = []\nurl = \"https://x\"\nkey = \"k\"\npayload = \"text\"\nurll = 1\n",
                &[
                    "intakes[0].name: \"default\" is the name of [intake]",
                    "intakes[0].payload: unknown payload `text`",
                    "intakes[0].urll: unknown key; did you mean intakes[0].url?",
                ],
            ),
        ];
        for (extra, expected) in cases {
            let text = errors(extra);
            for want in expected {
                assert!(text.contains(want), "{want}: {text}");
            }
        }
    }

    #[test]
    fn queue_entries_replace_or_join_the_queue_url() {
        let intake = "[intake]\nurl = \"https://intake.sekoia.io\"\nkey = \"k\"\n";
        let c = Config::from_toml_str(&format!(
            "{intake}[sqs]\n[[sqs.queues]]\nurl = \"https://sqs.eu-west-1.amazonaws.com/111111111111/ct\"\nformat = \"cloudtrail\"\nrole_arn = \"arn:aws:iam::111111111111:role/reader\"\n[[sqs.queues]]\nurl = \"https://sqs.us-east-1.amazonaws.com/222222222222/cf\"\nname = \"cloudfront\"\n"
        ))
        .unwrap();
        assert!(c.sqs.queue_url.is_empty());
        let labels: Vec<String> = c.sqs.queues.iter().map(|q| q.label()).collect();
        assert_eq!(labels, ["ct", "cloudfront"]);
        let text = Config::from_toml_str(&format!(
            "{intake}[sqs]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/1/ct\"\n[[sqs.queues]]\nurl = \"ftp://x/ct\"\nformat = \"nope\"\nexternal_id = \"x\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(text.contains("sqs.queues[0].url: scheme `ftp`"), "{text}");
        assert!(text.contains("sqs.queues[0].format:"), "{text}");
        assert!(
            text.contains("sqs.queues[0].external_id: only used with role_arn"),
            "{text}"
        );
        assert!(
            text.contains("sqs.queues[0].name: \"ct\" names two queues"),
            "{text}"
        );
        // Without either, the queue URL is still what is asked for.
        let text = Config::from_toml_str(intake).unwrap_err().to_string();
        assert!(text.starts_with("sqs.queue_url: required"), "{text}");
    }

    #[test]
    fn check_config_masks_every_intake_key() {
        let c = config(
            "[[intakes]]\nname = \"ct\"\ndatasets = [\"aws.cloudtrail\"]\nurl = \"https://intake.sekoia.io\"\nkey = \"second-secret-key\"\npayload = \"raw\"\n",
        );
        let shown = c.masked_toml();
        assert!(!shown.contains("second-secret-key"), "{shown}");
        assert!(
            shown.contains("[[intakes]]") && shown.contains("payload = \"raw\""),
            "{shown}"
        );
        assert!(!format!("{c:?}").contains("second-secret-key"));
    }
}
