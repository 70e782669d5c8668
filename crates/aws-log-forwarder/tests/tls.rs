//! Intake TLS and network options: an intake whose certificate is signed by a private
//! CA (generated here with rcgen) is trusted only with `intake.ca_file`; an intake that
//! requires client certificates (mTLS) accepts the forwarder only with
//! `intake.client_cert` + `intake.client_key` signed by its CA; `intake.headers` are sent
//! on every request. The last test runs the daemon end to end (LocalStack S3/SQS)
//! through an mTLS intake.
//!
//! Run with `scripts/test.sh` (it starts LocalStack and sets `ALF_TEST_AWS_ENDPOINT`).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use aws_log_forwarder::{Config, IntakeClient};
use common::intake::TestIntake;
use common::localstack::TestStack;
use common::tls::{TestPki, TlsFront};
use common::{RunningDaemon, cloudfront_log, wait_for_records_then_stop};

fn backend(intake: &TestIntake) -> SocketAddr {
    intake
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("the test intake listens on ip:port")
}

/// A configuration for `url` with the `[intake]` lines `extra`.
fn config(url: &str, extra: &str) -> Result<Config, String> {
    Config::from_toml_str(&format!(
        "[sqs]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n\
         [intake]\nurl = \"{url}\"\nprotocol = \"ndjson\"\ntimeout_seconds = 5\n{extra}"
    ))
    .map_err(|e| e.to_string())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `[intake]` lines: `ca`, then a client certificate and its key.
/// Probes `front` trusting the CA of `ca` and presenting the client certificate `cert`.
async fn probe_presenting(
    front: &TlsFront,
    ca: &str,
    cert: &Path,
    key: &Path,
) -> Result<u16, String> {
    let extra = format!(
        "{ca}client_cert = \"{}\"\nclient_key = \"{}\"\n",
        path(cert),
        path(key)
    );
    probe(&front.url(), &extra).await
}

/// A test intake behind a TLS front whose certificate a fresh private CA signed (the
/// PKI's files are in `dir`).
struct PrivateCaIntake {
    dir: tempfile::TempDir,
    pki: TestPki,
    intake: TestIntake,
    front: TlsFront,
}

impl PrivateCaIntake {
    async fn start(require_client_certificate: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let intake = TestIntake::start().await;
        let front = TlsFront::start(&pki, backend(&intake), require_client_certificate).await;
        PrivateCaIntake {
            dir,
            pki,
            intake,
            front,
        }
    }
}

async fn probe(url: &str, extra: &str) -> Result<u16, String> {
    let config = config(url, extra).expect("valid config");
    let client = IntakeClient::new(&config.intake).map_err(|e| e.to_string())?;
    client.probe().await.map(|s| s.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_intake_is_trusted_with_ca_file_only() {
    let tls = PrivateCaIntake::start(false).await;

    let refused = probe(&tls.front.url(), "").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("certificate")),
        "public roots only: the private CA must not be trusted: {refused:?}"
    );
    let trusted = probe(
        &tls.front.url(),
        &format!("ca_file = \"{}\"", path(&tls.pki.ca_file)),
    )
    .await;
    assert!(trusted.is_ok(), "with intake.ca_file: {trusted:?}");
    assert_eq!(tls.front.handshakes_ok(), 1);

    // A file that is not PEM: one line naming the key.
    let not_pem = tls.dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let e = probe(
        &tls.front.url(),
        &format!("ca_file = \"{}\"", path(&not_pem)),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("intake.ca_file") && e.contains("no PEM certificate"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_intake_accepts_only_a_client_certificate_from_its_ca() {
    let tls = PrivateCaIntake::start(true).await;
    let ca = format!("ca_file = \"{}\"\n", path(&tls.pki.ca_file));

    let without = probe(&tls.front.url(), &ca).await;
    assert!(without.is_err(), "no client certificate: {without:?}");
    let rogue = probe_presenting(
        &tls.front,
        &ca,
        &tls.pki.rogue_client_cert,
        &tls.pki.rogue_client_key,
    )
    .await;
    assert!(rogue.is_err(), "a certificate from another CA: {rogue:?}");
    assert_eq!(tls.front.handshakes_ok(), 0);
    assert!(tls.front.handshakes_failed_reaching(2).await >= 2);

    let with = probe_presenting(&tls.front, &ca, &tls.pki.client_cert, &tls.pki.client_key).await;
    assert!(with.is_ok(), "with the client certificate: {with:?}");
    assert_eq!(tls.front.handshakes_ok(), 1);
    tls.intake.wait_for_probe(Duration::from_secs(5)).await;
}

#[test]
fn tls_options_are_checked_with_one_line_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate(dir.path());
    let url = "https://intake.example.com";
    let e = config(
        url,
        &format!("client_cert = \"{}\"", path(&pki.client_cert)),
    )
    .unwrap_err();
    assert!(
        e.contains("intake.client_key") && e.contains("set both or neither"),
        "{e}"
    );
    let e = config(url, "ca_file = \"/nonexistent/ca.pem\"").unwrap_err();
    assert!(
        e.contains("intake.ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let e = config(url, "proxy = \"proxy:3128\"").unwrap_err();
    assert!(e.contains("intake.proxy"), "{e}");
    let e = config(url, "[intake.headers]\n\"Content-Type\" = \"text/plain\"").unwrap_err();
    assert!(e.contains("intake.headers.Content-Type"), "{e}");
    let e = config(url, "[intake.headers]\n\"X-Token\" = \"sec\\nret\"").unwrap_err();
    assert!(
        e.contains("intake.headers.X-Token") && !e.contains("sec"),
        "{e}"
    );

    // Header values and a proxy password never show in check-config or Debug output.
    let c = config(
        url,
        "proxy = \"http://user:hunter2@proxy.internal:3128\"\n\
         [intake.headers]\n\"X-Tenant-Token\" = \"tenant-secret-value\"",
    )
    .expect("valid");
    let shown = format!("{} {:?}", c.masked_toml(), c.intake);
    assert!(shown.contains("X-Tenant-Token"), "{shown}");
    assert!(
        !shown.contains("tenant-secret-value") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_through_an_mtls_intake_with_extra_headers() {
    let tls = PrivateCaIntake::start(true).await;
    let stack = TestStack::deploy("tls-mtls").await;
    let daemon = RunningDaemon::start(stack.daemon_config(
        &tls.intake,
        &format!(
            "[intake]\nurl = \"{}/ingest\"\nprotocol = \"ndjson\"\nca_file = \"{}\"\n\
             client_cert = \"{}\"\nclient_key = \"{}\"\n\
             [intake.headers]\n\"X-Tenant\" = \"org-42\"\n",
            tls.front.url(),
            path(&tls.pki.ca_file),
            path(&tls.pki.client_cert),
            path(&tls.pki.client_key)
        ),
    ));
    let key = "cloudfront/E2TESTDIST0001.2024-05-01-14.7105e111.gz";
    stack.put_gzip(key, cloudfront_log(3).as_bytes()).await;
    let events = wait_for_records_then_stop(&stack, &tls.intake, daemon, key, 6).await;

    assert_eq!(events.len(), 6);
    assert!(tls.front.handshakes_ok() >= 1);
    let posts: Vec<_> = tls
        .intake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(!posts.is_empty());
    for request in posts {
        assert_eq!(request.header("x-tenant"), Some("org-42"));
    }
}
