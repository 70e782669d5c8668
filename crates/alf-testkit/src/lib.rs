//! Test harness shared by the daemon crate's unit tests (`src/**` `mod tests`) and its
//! integration tests (`tests/`): one recording HTTP intake ([`intake::TestIntake`])
//! instead of a hand-written server per test suite, and small loopback helpers.
//!
//! Dev-only: no crate depends on it outside `[dev-dependencies]`, so its `expect`s are
//! test code. It must not depend on `aws-log-forwarder` (the daemon's unit tests use
//! it, and a cycle would give them a second copy of the daemon's types).

pub mod intake;

/// A loopback URL (`http://127.0.0.1:<port>`) nothing listens on: the port was bound
/// and released, so a connection is refused.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("local address of the port")
    );
    drop(listener);
    url
}

/// Every record of a directory dead-letter sink (JSON lines), files in name order. A
/// directory that does not exist (the sink never wrote) has none.
pub fn dead_letter_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .map(|e| e.expect("a dead-letter directory entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            std::fs::read_to_string(file)
                .expect("read a dead-letter file")
                .lines()
                .map(|l| serde_json::from_str(l).expect("dead-letter lines are JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}
