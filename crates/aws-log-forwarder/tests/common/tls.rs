//! A TLS front for the test intake: a private CA, a server certificate and a client
//! certificate generated per test with `rcgen` (written as PEM files, as users would
//! configure them), and a rustls server that terminates TLS (optionally requiring a
//! client certificate signed by the CA) and forwards the plain bytes to a
//! [`super::intake::TestIntake`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// PEM files of a test PKI.
pub struct TestPki {
    pub ca_file: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from a CA the server does not trust.
    pub rogue_client_cert: PathBuf,
    pub rogue_client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, rcgen::Certificate) {
    let key = KeyPair::generate().expect("generate the CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (params, key, cert)
}

fn leaf(
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, &KeyPair>,
) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("generate a leaf key");
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, "aws-log-forwarder test");
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("sign the leaf");
    (cert, key)
}

impl TestPki {
    /// Generates a CA, a server certificate for 127.0.0.1 and a client certificate (and
    /// a client certificate from another CA) into `dir`.
    pub fn generate(dir: &Path) -> TestPki {
        let (ca_params, ca_key, ca_cert) = ca("alf test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (server, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let (client, client_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, &issuer);
        let (rogue_params, rogue_key, _) = ca("some other CA");
        let rogue_issuer = Issuer::from_params(&rogue_params, &rogue_key);
        let (rogue, rogue_client_key) =
            leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, &rogue_issuer);
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        TestPki {
            ca_file: write("ca.pem", ca_cert.pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            rogue_client_cert: write("rogue.pem", rogue.pem()),
            rogue_client_key: write("rogue.key", rogue_client_key.serialize_pem()),
            ca_der: ca_cert.der().clone(),
            server_der: server.der().clone(),
            server_key_der: server_key.serialize_der(),
        }
    }
}

/// The TLS front. Stops when dropped.
pub struct TlsFront {
    pub addr: SocketAddr,
    handshakes_ok: Arc<AtomicU64>,
    handshakes_failed: Arc<AtomicU64>,
    accept_loop: JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl TlsFront {
    /// Serves TLS on an ephemeral loopback port in front of `backend` (the test
    /// intake's `host:port`); with `require_client_cert`, only clients presenting a
    /// certificate signed by the test CA get through.
    pub async fn start(pki: &TestPki, backend: SocketAddr, require_client_cert: bool) -> TlsFront {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der.clone()).expect("trust the test CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![pki.server_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone())),
            )
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let handshakes_ok = Arc::new(AtomicU64::new(0));
        let handshakes_failed = Arc::new(AtomicU64::new(0));
        let (ok, failed) = (Arc::clone(&handshakes_ok), Arc::clone(&handshakes_failed));
        let accept_loop = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut plain) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        TlsFront {
            addr,
            handshakes_ok,
            handshakes_failed,
            accept_loop,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn handshakes_ok(&self) -> u64 {
        self.handshakes_ok.load(Ordering::Relaxed)
    }

    pub fn handshakes_failed(&self) -> u64 {
        self.handshakes_failed.load(Ordering::Relaxed)
    }

    /// The failed handshakes once there are `n`, or after 5 s. The acceptor sends
    /// its alert before its task counts the failure, so a client can see the refusal
    /// before the count moves.
    pub async fn handshakes_failed_reaching(&self, n: u64) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.handshakes_failed() < n && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.handshakes_failed()
    }
}
