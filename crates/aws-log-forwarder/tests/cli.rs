//! The `aws-log-forwarder` binary's `parse` and `check-config` commands, run as a user
//! would run them. No network needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aws-log-forwarder");

const HEADER: &str = "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end\n";

const RECORD_1: &str = "2024-03-10\t08:15:42\tCDG50-C1\t5120\t198.51.100.23\tGET\td111111abcdef8.cloudfront.net\t/images/logo.png\t200\t-\tMozilla/5.0%20(X11;%20Linux%20x86_64)\t-\t-\tHit\tkTm3Jq1fXc0aQ2pZ9vNwB7eLr4sY6uHd8gFj5iKo==\twww.example.com\thttps\t412\t0.002\t-\tTLSv1.3\tTLS_AES_128_GCM_SHA256\tHit\tHTTP/2.0\t-\t-\t50312\t0.002\tHit\timage/png\t4870\t-\t-\n";
const RECORD_2: &str = "2024-03-10\t08:15:43\tCDG50-C1\t911\t203.0.113.7\tGET\td111111abcdef8.cloudfront.net\t/private/report.pdf\t403\t-\tcurl/8.5.0\tX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0123456789abcdef0123456789abcdef\t-\tError\tpQ8rT2sVw4xYz6aB1cD3eF5gH7iJ9kLm0nOp2qRs==\twww.example.com\thttps\t380\t0.001\t-\tTLSv1.3\tTLS_AES_128_GCM_SHA256\tError\tHTTP/1.1\t-\t-\t41822\t0.001\tError\ttext/html\t911\t-\t-\n";
const BROKEN: &str = "this line is not a cloudfront record\n";
const RECORD_3: &str = "2024-03-10\t08:15:44\tFRA56-P2\t2048\t2001:db8::17\tPOST\td111111abcdef8.cloudfront.net\t/api/login\t302\thttps://www.example.com/\tMozilla/5.0%20(Macintosh)\t-\t-\tMiss\tzZ1yY2xX3wW4vV5uU6tT7sS8rR9qQ0pP1oO2nN3m==\twww.example.com\thttps\t733\t0.120\t-\tTLSv1.2\tECDHE-RSA-AES128-GCM-SHA256\tMiss\tHTTP/2.0\t-\t-\t61001\t0.118\tMiss\t-\t0\t-\t-\n";

/// CloudFront's own file naming: the key layout tells the format.
const FILE_NAME: &str = "E2QWRUHAPOMQZL.2024-03-10-08.a1b2c3d4.gz";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A multi-member gzip file as CloudFront writes them: header, records, and a broken
/// line on line 5.
fn write_sample(dir: &Path) -> PathBuf {
    let mut data = gzip(HEADER.as_bytes());
    data.extend(gzip(format!("{RECORD_1}{RECORD_2}").as_bytes()));
    data.extend(gzip(format!("{BROKEN}{RECORD_3}").as_bytes()));
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, data).unwrap();
    path
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    // No ALF_* variables from the developer's shell.
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The command exited 0 (else its stderr is the failure message).
fn assert_succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn parse_events(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, p| &v[p])
}

#[test]
fn parse_prints_one_ecs_event_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_sample(dir.path());
    let path_str = path.to_str().unwrap();
    let out = run(&["parse", path_str], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);

    let events = parse_events(&out);
    assert_eq!(
        events.len(),
        4,
        "3 records + 1 raw event for the broken line"
    );
    for e in &events {
        assert_eq!(at(e, "event.dataset"), "aws.cloudfront_logs", "{e}");
        assert_eq!(at(e, "event.id").as_str().map(str::len), Some(32), "{e}");
        // Nested objects, not dotted keys.
        assert!(e.get("event.dataset").is_none());
    }
    assert_eq!(at(&events[0], "source.ip"), "198.51.100.23");
    assert_eq!(at(&events[0], "http.response.status_code"), 200);
    assert_eq!(at(&events[0], "url.path"), "/images/logo.png");
    assert_eq!(at(&events[1], "http.response.status_code"), 403);
    assert_eq!(at(&events[3], "source.ip"), "2001:db8::17");

    // The malformed line is forwarded raw, tagged, and reported with its line number.
    let raw = &events[2];
    assert_eq!(at(raw, "event.kind"), "pipeline_error");
    assert_eq!(at(raw, "event.original"), BROKEN.trim_end());
    assert!(
        raw["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "_parse_failure"),
        "{raw}"
    );
    assert!(
        stderr.starts_with(&format!("{path_str}: line 5: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Presigned URL signatures never leave unredacted.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("0123456789abcdef0123456789abcdef"));
    assert!(stdout.contains("REDACTED"));
}

#[test]
fn parse_options_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_sample(dir.path());
    // A neutral file name: detection then relies on --key.
    let renamed = dir.path().join("download.bin");
    std::fs::rename(&path, &renamed).unwrap();
    let file = renamed.to_str().unwrap();

    let out = run(
        &[
            "parse",
            "--key",
            &format!("cf/{FILE_NAME}"),
            "--no-redact",
            "--keep-original",
            file,
        ],
        &[],
    );
    assert!(out.status.success());
    let events = parse_events(&out);
    assert_eq!(events.len(), 4);
    assert_eq!(at(&events[0], "event.original"), RECORD_1.trim_end());
    assert_eq!(
        at(&events[0], "aws.s3.object.key"),
        format!("cf/{FILE_NAME}").as_str()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0123456789abcdef0123456789abcdef"));

    // Forced format: every record read as plain lines.
    let out = run(&["parse", "--format", "lines", file], &[]);
    assert!(out.status.success());
    let events = parse_events(&out);
    assert_eq!(at(&events[0], "event.dataset"), "aws.lines");

    let out = run(&["parse", "--format", "nope", file], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format `nope`"));
}

#[test]
fn parse_reads_plain_text_from_stdin() {
    let mut child = Command::new(BIN)
        .env_clear()
        .args(["parse", "--key", FILE_NAME, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{HEADER}{RECORD_1}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let events = parse_events(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(at(&events[0], "event.dataset"), "aws.cloudfront_logs");
}

#[test]
fn unreadable_input_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_sample(dir.path());
    let data = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.gz");
    std::fs::write(&truncated, &data[..data.len() - 20]).unwrap();
    let out = run(
        &[
            "parse",
            "--format",
            "cloudfront",
            truncated.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success(), "a truncated gzip must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("truncated.gz: reading the input failed: "),
        "{stderr}"
    );

    let missing = dir.path().join("missing.gz");
    let out = run(&["parse", missing.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.gz"));
}

const CONFIG: &str = r#"
[sqs]
queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs"

[intake]
url = "https://intake.sekoia.io"
key = "0f5e-secret-intake-key-7a1b"
"#;

/// Writes `text` to `alf.toml` in a new temporary directory; the directory lives as
/// long as the returned guard.
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alf.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// `check-config` and `run` both refuse the configuration at `path`: exit code 2,
/// nothing on stdout, exactly `stderr` on stderr.
fn assert_both_commands_refuse(path: &Path, stderr: &str) {
    for command in ["check-config", "run"] {
        let out = run(&[command, "--config", path.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(out.stdout.is_empty(), "{command}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), stderr, "{command}");
    }
}

#[test]
fn check_config_masks_the_key() {
    let (_dir, path) = config_file(CONFIG);
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_succeeded(&out);
    assert!(!stdout.contains("0f5e-secret-intake-key-7a1b"), "{stdout}");
    assert!(stdout.contains("key = \"***\""), "{stdout}");
    assert!(
        stdout.contains("wait_time_seconds = 20"),
        "defaults are shown: {stdout}"
    );

    // Key from the environment: the variable name is shown, never its value.
    let from_env = CONFIG.replace(
        "key = \"0f5e-secret-intake-key-7a1b\"",
        "key_env = \"ALF_TEST_INTAKE_KEY\"",
    );
    std::fs::write(&path, from_env).unwrap();
    let out = run(
        &[
            "check-config",
            "--config",
            path.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[
            ("ALF_TEST_INTAKE_KEY", "0f5e-secret-intake-key-7a1b"),
            ("ALF_BATCH__LINGER_MS", "250"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_succeeded(&out);
    assert!(!stdout.contains("0f5e-secret-intake-key-7a1b"), "{stdout}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["intake"]["key"], "***");
    assert_eq!(json["intake"]["key_env"], "ALF_TEST_INTAKE_KEY");
    assert_eq!(json["batch"]["linger_ms"], 250);
}

#[test]
fn bad_config_exits_2_with_one_readable_line() {
    let (_dir, path) = config_file(&CONFIG.replace("https://intake.sekoia.io", "intake.sekoia.io"));
    assert_both_commands_refuse(
        &path,
        "config: intake.url: relative URL without a base (expected e.g. https://intake.sekoia.io)\n",
    );
}

/// `parse --config` decides formats with the configuration's rules, as the daemon does:
/// a headerless custom VPC flow log is read with the rule's field list, and the rule's
/// options reach the format untouched; without the config the same file is plain lines.
#[test]
fn parse_with_config_applies_the_daemons_format_rules() {
    let (dir, config) = config_file(&format!(
        "{CONFIG}\n[[formats.rules]]\nkey_prefix = \"custom/\"\nformat = \"vpc-flow\"\nvpc_flow_fields = [\"srcaddr\", \"dstaddr\", \"action\"]\n"
    ));
    let input = dir.path().join("flows.log");
    std::fs::write(&input, "192.0.2.1 192.0.2.2 REJECT\n").unwrap();
    let input = input.to_str().unwrap();

    let out = run(
        &[
            "parse",
            "--config",
            config.to_str().unwrap(),
            "--key",
            "custom/flows.log",
            input,
        ],
        &[],
    );
    assert_succeeded(&out);
    let events = parse_events(&out);
    assert_eq!(events.len(), 1);
    assert_eq!(at(&events[0], "event.dataset"), "aws.vpcflow");
    assert_eq!(at(&events[0], "source.ip"), "192.0.2.1");
    assert_eq!(at(&events[0], "destination.ip"), "192.0.2.2");
    assert_eq!(at(&events[0], "event.action"), "REJECT");

    let out = run(&["parse", "--key", "custom/flows.log", input], &[]);
    assert_eq!(at(&parse_events(&out)[0], "event.dataset"), "aws.lines");

    // A rule option the format does not have is a config error naming the key.
    std::fs::write(
        &config,
        format!("{CONFIG}\n[[formats.rules]]\nkey_prefix = \"custom/\"\nformat = \"waf\"\nvpc_flow_fields = [\"srcaddr\"]\n"),
    )
    .unwrap();
    let out = run(&["parse", "--config", config.to_str().unwrap(), input], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "config: formats.rules[0].vpc_flow_fields: only applies to format = \"vpc-flow\", not \"waf\"\n"
    );
}

#[test]
fn check_config_reports_every_error_at_once() {
    // A bad queue URL, a zero and an ftp intake: three keys to fix, three lines.
    let text = CONFIG
        .replace(
            "queue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs\"",
            "queue_url = \"sqs.eu-west-1.amazonaws.com/123456789012/aws-logs\"\nmax_messages_in_flight = 0",
        )
        .replace("https://intake.sekoia.io", "ftp://intake.sekoia.io");
    let (_dir, path) = config_file(&text);
    assert_both_commands_refuse(
        &path,
        "config: sqs.queue_url: relative URL without a base (expected e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/aws-logs)\n\
         config: sqs.max_messages_in_flight: 0 is out of range (expected between 1 and 10000)\n\
         config: intake.url: scheme `ftp` is not http or https (expected e.g. https://intake.sekoia.io)\n",
    );
}

#[test]
fn unknown_keys_are_errors_with_a_suggestion() {
    let (_dir, path) = config_file(&format!("{CONFIG}gzipp = false\n[batch]\nlinger = 5\n"));
    let out = run(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "config: intake.gzipp: unknown key; did you mean intake.gzip?\n\
         config: batch.linger: unknown key; did you mean batch.linger_ms?\n"
    );
    // The same typo from the environment is caught too.
    std::fs::write(&path, CONFIG).unwrap();
    let out = run(
        &["check-config", "--config", path.to_str().unwrap()],
        &[("ALF_SQS__WAIT_TIME_SECOND", "5")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "config: sqs.wait_time_second: unknown key; did you mean sqs.wait_time_seconds?\n"
    );
}

/// The help of `parse --format` and `replay --format` names every registered format,
/// so a new format is documented on the command line by its registry entry alone.
#[test]
fn format_help_names_every_registered_format() {
    for command in ["parse", "replay"] {
        let out = run(&[command, "--help"], &[]);
        let help = String::from_utf8_lossy(&out.stdout);
        for format in alf_formats::Format::ALL {
            assert!(
                help.contains(format.name()),
                "`{command} --help` does not name {}",
                format.name()
            );
        }
    }
}
