//! A real HTTP intake for the daemon's unit and integration tests.
//!
//! It listens on `127.0.0.1:<ephemeral port>` inside the test process, speaks the three
//! protocols the forwarder can send (Sekoia `/batch`, NDJSON, Elasticsearch `_bulk`),
//! gunzips bodies, and records every request and every accepted event, so tests can
//! assert on what really went over the wire. It can be told to misbehave (5xx, 429,
//! 400, slowness, dropped connections) to exercise the forwarder's retry and
//! acknowledgement logic: one mode at a time ([`Mode`]), a random mix of every failure
//! ([`Mode::Chaos`]), a poison detector ([`Mode::RejectMarked`]) and a full outage that
//! overrides any mode while it lasts ([`TestIntake::set_outage`]). A test that needs
//! one exact answer (a status, headers and body of its own, e.g. an Elasticsearch
//! `_bulk` answer with per-item errors) scripts it with [`Mode::Reply`], or computes it
//! from the request with [`Mode::Answer`]; [`TestIntake::start_replying`] scripts a
//! whole sequence.
//!
//! Accepted events are counted by `event.id` (duplicates included) in a map, so a test
//! with ~300k events can check "every id at least once" and the duplicate rate without
//! keeping the events themselves ([`TestIntake::set_keep_events`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the intake answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 (201 items for `_bulk`); the events are recorded.
    Accept,
    /// 500: a transient failure the forwarder must retry.
    Fail500,
    /// 400: a permanent rejection the forwarder must not retry (the answer echoes the
    /// intake key).
    Reject400,
    /// 429 with `Retry-After: <retry_after_secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// Waits, then behaves like [`Mode::Accept`] (exercises the forwarder's timeouts).
    Slow(Duration),
    /// Reads the request head, then closes the connection without any response.
    ResetConnection,
    /// 200 like [`Mode::Accept`], but the events are only counted (in
    /// [`RecordedRequest::events`]), not kept: for tests that measure the forwarder's
    /// memory in this process.
    AcceptDiscard,
    /// 503: a transient failure (the intake's load balancer has no healthy backend).
    Fail503,
    /// Reads the whole body, then answers 500 and does not record the events as
    /// accepted: the forwarder sent everything and must still send it again.
    AcceptBodyThenFail500,
    /// Waits `Duration` (meant to be longer than the forwarder's request timeout), then
    /// answers 503: the forwarder must give up on its own and retry.
    Hang(Duration),
    /// A random mix, drawn per request from a seeded generator: with probability
    /// `failure_per_mille / 1000` one of [`Mode::Fail500`], [`Mode::Fail503`],
    /// [`Mode::TooManyRequests`] (`Retry-After: 1`), [`Mode::ResetConnection`],
    /// [`Mode::AcceptBodyThenFail500`] or [`Mode::Hang`]`(hang)` (equally likely),
    /// otherwise [`Mode::Accept`]. The recorded mode is the one drawn.
    Chaos {
        seed: u64,
        failure_per_mille: u32,
        hang: Duration,
    },
    /// 400 with a JSON error body (`{"message": ..., "marker": ...}`) to any request
    /// holding an event whose JSON text contains `marker`; other requests are accepted.
    RejectMarked { marker: String },
    /// Reads the body, then sends exactly this answer. The events are not recorded as
    /// accepted whatever the status: what the answer means is the test's business.
    Reply(Reply),
    /// Like [`Mode::Reply`], with the answer computed from the request (its body is in
    /// [`RecordedRequest::body`]).
    Answer(Answerer),
}

/// One exact HTTP answer ([`Mode::Reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Extra response headers (`Content-Length` is set by the server).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// An answer with `status` and `body` and no extra header.
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The same answer with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The function behind [`Mode::Answer`]: the request as recorded so far (body
/// included) to the answer. Two answerers are equal when they are the same function
/// object.
#[derive(Clone)]
pub struct Answerer(Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>);

impl Answerer {
    pub fn new(answer: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) -> Answerer {
        Answerer(Arc::new(answer))
    }
}

impl fmt::Debug for Answerer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Answerer(..)")
    }
}

impl PartialEq for Answerer {
    fn eq(&self, other: &Answerer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Answerer {}

/// How the intake fails while an outage is on ([`TestIntake::set_outage`]); it overrides
/// every mode, scripted or default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Every request is answered 503.
    ServiceUnavailable,
    /// Every connection is closed as soon as it is accepted, before any byte is read:
    /// to the client this is a connection error, like a refused connection.
    Refuse,
}

/// One request as the intake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The HTTP version as written on the request line (`HTTP/1.1`).
    pub version: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    /// Body size as received (compressed when gzip or zstd was used).
    pub body_bytes: usize,
    /// The body as received (compressed when gzip or zstd was used). Not kept (empty) in
    /// [`Mode::AcceptDiscard`] or after [`TestIntake::set_keep_events`]`(false)`, so
    /// memory and long-running tests hold no bodies.
    pub body: Bytes,
    /// Events decoded from the body (whether or not they were accepted).
    pub events: usize,
    /// The key from the Sekoia body, or `X-Intake-Key` for the other protocols.
    pub intake_key: Option<String>,
    /// What the intake answered; `None` when no answer was sent (the intake dropped the
    /// connection, or the client gave up first).
    pub status: Option<u16>,
    /// The client closed the connection before the intake answered (e.g. its timeout
    /// fired during a [`Mode::Slow`] delay).
    pub client_gave_up: bool,
    /// Why the body could not be decoded, if it could not.
    pub decode_error: Option<String>,
    /// The mode that answered this request.
    pub mode: Mode,
    /// When the request head arrived.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request line, e.g. `POST /batch HTTP/1.1`.
    pub fn request_line(&self) -> String {
        format!("{} {} {}", self.method, self.path, self.version)
    }

    /// [`RecordedRequest::body`], decompressed as its `Content-Encoding` says (gzip or
    /// zstd).
    pub fn plain_body(&self) -> Vec<u8> {
        decompress(self.header("content-encoding"), &self.body)
            .expect("a body the test intake can decompress")
    }
}

struct State {
    default_mode: Mode,
    /// Modes for the next requests, used before `default_mode`.
    scripted: VecDeque<Mode>,
    requests: Vec<RecordedRequest>,
    events: Vec<Value>,
    /// `_bulk` action lines of accepted requests, one per event.
    bulk_actions: Vec<Value>,
    /// Whether accepted events are kept in `events`/`bulk_actions` (they are always
    /// counted in `accepted_ids`).
    keep_events: bool,
    /// Times each `event.id` was accepted (events without one are under `""`).
    accepted_ids: HashMap<String, u32>,
    /// Total accepted events (duplicates included), kept or not.
    accepted_total: usize,
    /// The generator behind [`Mode::Chaos`], seeded on first use.
    chaos_rng: Option<SplitMix64>,
    outage: Option<Outage>,
    /// The answer to `HEAD` probes; `None`: 200 with an empty body.
    probe_reply: Option<Reply>,
    /// The `HEAD` probes seen (kept apart from `requests`: they carry no events).
    probes: Vec<RecordedRequest>,
}

/// A small deterministic generator (SplitMix64): a chaos run is replayable from its seed,
/// and the test harness needs no random-number crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Shared {
    state: Mutex<State>,
    /// Number of accepted events, for waiting without polling.
    accepted: watch::Sender<usize>,
    /// Number of requests seen (counted when answered or dropped).
    seen: watch::Sender<usize>,
    /// Number of requests whose head arrived (counted at once, before any delay).
    arrived: watch::Sender<usize>,
    /// Number of `HEAD` probes answered.
    probes: watch::Sender<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the recorded data from the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The test intake server. Stops accepting connections when dropped.
pub struct TestIntake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

impl Drop for TestIntake {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Error returned by the service to make hyper drop the connection unanswered.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("test intake dropped the connection on purpose")
    }
}

impl std::error::Error for DropConnection {}

impl TestIntake {
    /// Binds an ephemeral loopback port and starts serving in [`Mode::Accept`].
    pub async fn start() -> TestIntake {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test intake on 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("local address of the test intake");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                default_mode: Mode::Accept,
                scripted: VecDeque::new(),
                requests: Vec::new(),
                events: Vec::new(),
                bulk_actions: Vec::new(),
                keep_events: true,
                accepted_ids: HashMap::new(),
                accepted_total: 0,
                chaos_rng: None,
                outage: None,
                probe_reply: None,
                probes: Vec::new(),
            }),
            accepted: watch::channel(0).0,
            seen: watch::channel(0).0,
            arrived: watch::channel(0).0,
            probes: watch::channel(0).0,
        });
        let loop_shared = Arc::clone(&shared);
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if loop_shared.lock().outage == Some(Outage::Refuse) {
                    // Dropping the stream closes it unread: a connection error for the
                    // client, as close to "refused" as a bound port can get.
                    drop(stream);
                    continue;
                }
                let conn_shared = Arc::clone(&loop_shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&conn_shared), req));
                    // Errors here are the client going away or our own DropConnection.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestIntake {
            addr,
            shared,
            accept_loop,
        }
    }

    /// Starts an intake that answers the requests with `replies` in order, the last one
    /// for every request after it (`replies` must not be empty).
    pub async fn start_replying(replies: Vec<Reply>) -> TestIntake {
        let intake = TestIntake::start().await;
        let (last, first) = replies
            .split_last()
            .expect("start_replying needs at least one reply");
        intake.set_mode(Mode::Reply(last.clone()));
        for reply in first {
            intake.set_mode_for_next(1, Mode::Reply(reply.clone()));
        }
        intake
    }

    /// Starts an intake that answers every request with `answer(request)`.
    pub async fn start_answering(
        answer: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) -> TestIntake {
        let intake = TestIntake::start().await;
        intake.set_mode(Mode::Answer(Answerer::new(answer)));
        intake
    }

    /// Answers the following `HEAD` probes with `reply` (default: 200, empty body).
    pub fn set_probe_reply(&self, reply: Reply) {
        self.shared.lock().probe_reply = Some(reply);
    }

    /// The `HEAD` probes seen so far, in arrival order.
    pub fn probe_requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().probes.clone()
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (the forwarder appends `/batch` or `/_bulk`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every following request with `mode` (forgets scripted modes).
    pub fn set_mode(&self, mode: Mode) {
        let mut st = self.shared.lock();
        st.scripted.clear();
        st.default_mode = mode;
    }

    /// Answers the next `n` requests with `mode`, then goes back to the current default.
    pub fn set_mode_for_next(&self, n: usize, mode: Mode) {
        let mut st = self.shared.lock();
        st.scripted.extend(std::iter::repeat_n(mode, n));
    }

    /// Starts (`Some`) or ends (`None`) a full outage; while it lasts every request fails
    /// as `outage` says, whatever the mode. Requests already being handled finish as
    /// their mode says.
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.shared.lock().outage = outage;
    }

    /// Whether accepted events are kept for [`TestIntake::events`] (default) or only
    /// counted by `event.id` ([`TestIntake::accepted_ids`]): for runs with hundreds of
    /// thousands of events.
    pub fn set_keep_events(&self, keep: bool) {
        self.shared.lock().keep_events = keep;
    }

    /// How many times each `event.id` was accepted (an event without `event.id` counts
    /// under `""`).
    pub fn accepted_ids(&self) -> HashMap<String, u32> {
        self.shared.lock().accepted_ids.clone()
    }

    /// Accepted events, duplicates included (kept or not).
    pub fn accepted_total(&self) -> usize {
        self.shared.lock().accepted_total
    }

    /// Accepted events beyond the first of their `event.id` (the redelivery cost).
    pub fn duplicates(&self) -> usize {
        let st = self.shared.lock();
        st.accepted_total - st.accepted_ids.len()
    }

    /// Every accepted event, in arrival order (duplicates from redeliveries included).
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// The `_bulk` action lines (`{"create":{"_index":...}}`) of accepted requests.
    pub fn bulk_actions(&self) -> Vec<Value> {
        self.shared.lock().bulk_actions.clone()
    }

    /// Every request seen so far, in arrival order (a slow request is recorded when it
    /// is answered, but sorts where it arrived).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let mut requests = self.shared.lock().requests.clone();
        requests.sort_by_key(|r| r.received_at);
        requests
    }

    /// Waits until `counter` reaches `n`; panics after `timeout` with what the intake
    /// saw (naming `what` was awaited), so a test never hangs.
    async fn wait_until(
        &self,
        counter: &watch::Sender<usize>,
        n: usize,
        timeout: Duration,
        what: &str,
    ) {
        let mut rx = counter.subscribe();
        if tokio::time::timeout(timeout, rx.wait_for(|count| *count >= n))
            .await
            .is_err()
        {
            panic!(
                "test intake: expected at least {n} {what} within {timeout:?}, got {}\n{}",
                *rx.borrow(),
                self.describe()
            );
        }
    }

    /// Waits until at least `n` events were accepted and returns all accepted events.
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_until(&self.shared.accepted, n, timeout, "accepted events")
            .await;
        self.events()
    }

    /// Waits until at least `n` requests were answered or dropped, and returns them all.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        self.wait_until(&self.shared.seen, n, timeout, "requests")
            .await;
        self.requests()
    }

    /// Waits until the heads of at least `n` requests arrived, answered or not (a
    /// [`Mode::Slow`] request counts while the intake is still holding it).
    pub async fn wait_for_arrivals(&self, n: usize, timeout: Duration) {
        self.wait_until(&self.shared.arrived, n, timeout, "arrived requests")
            .await;
    }

    /// Waits until the forwarder's start-up `HEAD` probe arrived.
    pub async fn wait_for_probe(&self, timeout: Duration) {
        self.wait_until(&self.shared.probes, 1, timeout, "HEAD probes")
            .await;
    }

    /// A readable summary of the requests seen, for failure messages.
    pub fn describe(&self) -> String {
        let st = self.shared.lock();
        let mut out = format!(
            "test intake at {}: {} requests, {} accepted events\n",
            self.addr,
            st.requests.len(),
            st.accepted_total
        );
        let mut requests: Vec<&RecordedRequest> = st.requests.iter().collect();
        requests.sort_by_key(|r| r.received_at);
        // A chaos run makes thousands of requests: show the first and last ones.
        const SHOWN_AT_EACH_END: usize = 60;
        let total = requests.len();
        for (i, r) in requests.into_iter().enumerate() {
            if total > 2 * SHOWN_AT_EACH_END
                && (SHOWN_AT_EACH_END..total - SHOWN_AT_EACH_END).contains(&i)
            {
                if i == SHOWN_AT_EACH_END {
                    out.push_str(&format!(
                        "  ... {} requests not shown ...\n",
                        total - 2 * SHOWN_AT_EACH_END
                    ));
                }
                continue;
            }
            out.push_str(&format!(
                "  #{i} {} {} -> {} ({} events, {} body bytes, mode {:?}){}\n",
                r.method,
                r.path,
                match (r.status, r.client_gave_up) {
                    (Some(s), _) => s.to_string(),
                    (None, true) => "client gave up".to_owned(),
                    (None, false) => "dropped by the intake".to_owned(),
                },
                r.events,
                r.body_bytes,
                r.mode,
                r.decode_error
                    .as_ref()
                    .map(|e| format!(" DECODE ERROR: {e}"))
                    .unwrap_or_default()
            ));
        }
        out
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    // The forwarder's start-up reachability probe: answered, but neither recorded nor
    // counted against the scripted modes (it carries no events).
    if req.method() == hyper::Method::HEAD {
        let reply = {
            let mut st = shared.lock();
            let probe = recorded_head(&req, Mode::Accept);
            st.probes.push(probe);
            st.probe_reply.clone()
        };
        shared.probes.send_modify(|n| *n += 1);
        return Ok(match reply {
            Some(reply) => reply_response(&reply),
            None => Response::new(Full::new(Bytes::new())),
        });
    }
    let mode = {
        let mut st = shared.lock();
        let default = st.default_mode.clone();
        let mode = st.scripted.pop_front().unwrap_or(default);
        match (st.outage, mode) {
            (Some(_), _) => Mode::Fail503,
            (
                None,
                Mode::Chaos {
                    seed,
                    failure_per_mille,
                    hang,
                },
            ) => {
                let rng = st.chaos_rng.get_or_insert(SplitMix64(seed));
                if rng.below(1000) >= u64::from(failure_per_mille) {
                    Mode::Accept
                } else {
                    match rng.below(6) {
                        0 => Mode::Fail500,
                        1 => Mode::Fail503,
                        2 => Mode::TooManyRequests {
                            retry_after_secs: 1,
                        },
                        3 => Mode::ResetConnection,
                        4 => Mode::AcceptBodyThenFail500,
                        _ => Mode::Hang(hang),
                    }
                }
            }
            (None, mode) => mode,
        }
    };
    let record = recorded_head(&req, mode.clone());
    shared.arrived.send_modify(|n| *n += 1);
    // Records the request even when hyper drops this future because the client left.
    let mut recorder = Recorder {
        shared,
        record: Some(record),
    };

    if mode == Mode::ResetConnection {
        recorder.finish(None, Vec::new(), Vec::new());
        return Err(DropConnection);
    }
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    if let Mode::Hang(delay) = mode {
        tokio::time::sleep(delay).await;
        recorder.finish(Some(503), Vec::new(), Vec::new());
        return Ok(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "test intake: hung past the client's timeout"}),
        ));
    }

    let coding = req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let header_key = req
        .headers()
        .get("x-intake-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            // The client went away mid-body: nothing to answer (the recorder notes it).
            return Err(DropConnection);
        }
    };
    let record = recorder.record();
    record.body_bytes = body.len();
    record.body = body.clone();
    let reply = match &mode {
        Mode::Reply(reply) => Some(reply.clone()),
        Mode::Answer(answer) => Some((answer.0)(record)),
        _ => None,
    };
    if let Some(reply) = reply {
        // The body need not be events (a test may send anything): decoded when it can be.
        if let Ok(d) = decode_body(&record.path, coding.as_deref(), &body) {
            record.events = d.events.len();
            record.intake_key = d.intake_key.or(header_key);
        }
        recorder.finish(Some(reply.status), Vec::new(), Vec::new());
        return Ok(reply_response(&reply));
    }

    let decoded = decode_body(&record.path, coding.as_deref(), &body);
    let (events, bulk_actions) = match decoded {
        Ok(d) => {
            record.intake_key = d.intake_key.or(header_key);
            (d.events, d.bulk_actions)
        }
        Err(e) => {
            eprintln!("test intake: cannot decode {} body: {e}", record.path);
            record.decode_error = Some(e.clone());
            recorder.finish(Some(400), Vec::new(), Vec::new());
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &json!({"message": format!("test intake cannot decode the body: {e}")}),
            ));
        }
    };
    record.events = events.len();

    let poisoned = match &mode {
        Mode::RejectMarked { marker } => events
            .iter()
            .filter(|e| e.to_string().contains(marker.as_str()))
            .count(),
        _ => 0,
    };
    if poisoned > 0 {
        let Mode::RejectMarked { marker } = &mode else {
            unreachable!("only RejectMarked finds poison")
        };
        let body = json!({
            "message": format!("test intake: {poisoned} event(s) hold the marker {marker}"),
            "marker": marker,
        });
        recorder.finish(Some(400), Vec::new(), Vec::new());
        return Ok(json_response(StatusCode::BAD_REQUEST, &body));
    }

    let response = match mode {
        Mode::Accept | Mode::Slow(_) | Mode::RejectMarked { .. } => {
            let n = events.len();
            let body = if record.path.ends_with("/_bulk") {
                let items: Vec<Value> = bulk_actions
                    .iter()
                    .map(|action| {
                        let name = action
                            .as_object()
                            .and_then(|o| o.keys().next())
                            .cloned()
                            .unwrap_or_default();
                        json!({ name: {"status": 201, "result": "created"} })
                    })
                    .collect();
                json!({"took": 1, "errors": false, "items": items})
            } else {
                let ids: Vec<String> = (0..n).map(|i| format!("test-{i}")).collect();
                json!({"received": n, "event_ids": ids})
            };
            recorder.finish(Some(200), events, bulk_actions);
            return Ok(json_response(StatusCode::OK, &body));
        }
        Mode::AcceptDiscard => {
            let n = events.len();
            recorder.finish(Some(200), Vec::new(), Vec::new());
            return Ok(json_response(StatusCode::OK, &json!({"received": n})));
        }
        Mode::Fail500 => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"message": "test intake: simulated outage"}),
        ),
        Mode::Fail503 => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "test intake: service unavailable"}),
        ),
        Mode::AcceptBodyThenFail500 => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"message": "test intake: read the body, then failed"}),
        ),
        // Echoes the key it got, as some intakes do in their error answers: the
        // forwarder logs an excerpt of the answer and must mask the key in it.
        Mode::Reject400 => json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "message": "test intake: simulated permanent rejection",
                "intake_key": record.intake_key.clone(),
            }),
        ),
        Mode::TooManyRequests { retry_after_secs } => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"message": "test intake: slow down"}),
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        Mode::ResetConnection
        | Mode::Hang(_)
        | Mode::Chaos { .. }
        | Mode::Reply(_)
        | Mode::Answer(_) => {
            unreachable!("handled before reading the body, or resolved to another mode")
        }
    };
    recorder.finish(Some(response.status().as_u16()), Vec::new(), Vec::new());
    Ok(response)
}

/// Owns the record of the request being handled: [`Recorder::finish`] stores it with the
/// answer, and dropping it unfinished (hyper drops the handler when the client leaves)
/// stores it as given up by the client, so no request goes unrecorded.
struct Recorder {
    shared: Arc<Shared>,
    record: Option<RecordedRequest>,
}

impl Recorder {
    fn record(&mut self) -> &mut RecordedRequest {
        self.record
            .as_mut()
            .expect("the record is present until finish or drop")
    }

    /// Records the answer (and the events when accepted) and wakes the waiters.
    fn finish(mut self, status: Option<u16>, accepted: Vec<Value>, bulk_actions: Vec<Value>) {
        if let Some(mut record) = self.record.take() {
            record.status = status;
            store(&self.shared, record, accepted, bulk_actions);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.client_gave_up = true;
            store(&self.shared, record, Vec::new(), Vec::new());
        }
    }
}

fn store(
    shared: &Shared,
    mut record: RecordedRequest,
    accepted: Vec<Value>,
    bulk_actions: Vec<Value>,
) {
    let (requests, events) = {
        let mut st = shared.lock();
        if !st.keep_events || record.mode == Mode::AcceptDiscard {
            record.body = Bytes::new();
        }
        st.requests.push(record);
        st.accepted_total += accepted.len();
        for event in &accepted {
            let id = event
                .pointer("/event/id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match st.accepted_ids.get_mut(id) {
                Some(count) => *count += 1,
                None => {
                    st.accepted_ids.insert(id.to_owned(), 1);
                }
            }
        }
        if st.keep_events {
            st.events.extend(accepted);
            st.bulk_actions.extend(bulk_actions);
        }
        (st.requests.len(), st.accepted_total)
    };
    shared.seen.send_replace(requests);
    shared.accepted.send_replace(events);
}

/// The record of a request as its head arrived (no body yet).
fn recorded_head<B>(req: &Request<B>, mode: Mode) -> RecordedRequest {
    RecordedRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        version: format!("{:?}", req.version()),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_bytes: 0,
        body: Bytes::new(),
        events: 0,
        intake_key: None,
        status: None,
        client_gave_up: false,
        decode_error: None,
        mode,
        received_at: Instant::now(),
    }
}

/// The HTTP answer for a [`Reply`].
fn reply_response(reply: &Reply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(reply.body.clone())));
    *r.status_mut() = StatusCode::from_u16(reply.status).expect("a valid HTTP status in Reply");
    for (name, value) in &reply.headers {
        r.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes())
                .expect("a valid header name in Reply"),
            HeaderValue::from_str(value).expect("a valid header value in Reply"),
        );
    }
    r
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

struct Decoded {
    events: Vec<Value>,
    intake_key: Option<String>,
    /// `_bulk` action lines, one per event.
    bulk_actions: Vec<Value>,
}

/// `body` decompressed as `Content-Encoding: coding` says: gzip, zstd, or none
/// (absent or `identity`); any other coding is an error, as a real intake would answer.
fn decompress(coding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match coding.map(str::trim) {
        None => out.extend_from_slice(body),
        Some(c) if c.eq_ignore_ascii_case("identity") => out.extend_from_slice(body),
        Some(c) if c.eq_ignore_ascii_case("gzip") => {
            flate2::read::MultiGzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("gunzip: {e}"))?;
        }
        Some(c) if c.eq_ignore_ascii_case("zstd") => {
            out = zstd::stream::decode_all(body).map_err(|e| format!("zstd: {e}"))?;
        }
        Some(other) => return Err(format!("unsupported Content-Encoding {other:?}")),
    }
    Ok(out)
}

/// Turns a request body into events, by protocol: `_bulk` by path, Sekoia by its
/// `{"intake_key", "jsons"}` shape, NDJSON otherwise.
fn decode_body(path: &str, coding: Option<&str>, body: &[u8]) -> Result<Decoded, String> {
    let text = String::from_utf8(decompress(coding, body)?)
        .map_err(|e| format!("body is not UTF-8: {e}"))?;
    let mut decoded = Decoded {
        events: Vec::new(),
        intake_key: None,
        bulk_actions: Vec::new(),
    };

    if path.ends_with("/_bulk") {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        while let Some(action_line) = lines.next() {
            let action: Value = serde_json::from_str(action_line)
                .map_err(|e| format!("bulk action line {action_line:?}: {e}"))?;
            if action.as_object().is_none_or(|o| o.len() != 1) {
                return Err(format!(
                    "bulk action line is not a one-key object: {action_line}"
                ));
            }
            let doc_line = lines
                .next()
                .ok_or_else(|| format!("bulk action {action_line} has no document"))?;
            let doc: Value = serde_json::from_str(doc_line)
                .map_err(|e| format!("bulk document {doc_line:?}: {e}"))?;
            decoded.bulk_actions.push(action);
            decoded.events.push(doc);
        }
        return Ok(decoded);
    }

    let trimmed = text.trim_start();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(trimmed)
        && obj.contains_key("jsons")
    {
        decoded.intake_key = obj
            .get("intake_key")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let jsons = obj
            .get("jsons")
            .and_then(Value::as_array)
            .ok_or("`jsons` is not an array")?;
        for (i, item) in jsons.iter().enumerate() {
            let s = item
                .as_str()
                .ok_or_else(|| format!("jsons[{i}] is not a string (Sekoia wants JSON text)"))?;
            let ev: Value =
                serde_json::from_str(s).map_err(|e| format!("jsons[{i}] is not JSON: {e}"))?;
            decoded.events.push(ev);
        }
        return Ok(decoded);
    }

    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ev: Value =
            serde_json::from_str(line).map_err(|e| format!("NDJSON line {}: {e}", i + 1))?;
        decoded.events.push(ev);
    }
    Ok(decoded)
}
