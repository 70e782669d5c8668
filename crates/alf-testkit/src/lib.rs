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
