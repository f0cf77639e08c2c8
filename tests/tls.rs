//! TLS by default, against real servers with certificates made by the test
//! (rcgen): plaintext on a network address is refused in one line; with
//! `tls.client_ca` a client without a certificate from that CA gets nothing,
//! one with (`--cert`/`--key`) is served;
//! a certificate swapped on disk is served to new connections while a call
//! on an older connection goes on to its end.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callwatch_client::{self as client, ClientIdentity, Connection, SoftphoneCall};
use callwatch_core::audio::{Channel, Recording};
use callwatch_proto::pb;
use callwatch_server::config::TlsFiles;
use callwatch_server::server::Server;
use common::service::*;
use predicates::prelude::*;

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

fn ca() -> Issuer {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Issuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `name` signed by `ca`, and its key (PEM).
fn issue(ca: &Issuer, name: &str, usage: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![usage];
    (params.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
}

/// Writes a server certificate for localhost from `ca` to `dir`.
fn server_files(dir: &Path, ca: &Issuer) -> TlsFiles {
    let (cert, key) = issue(ca, "localhost", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        client_ca: None,
    };
    std::fs::write(&files.key, key).unwrap();
    std::fs::write(&files.cert, cert).unwrap();
    files
}

fn write_ca(dir: &Path, name: &str, ca: &Issuer) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, ca.pem()).unwrap();
    path
}

fn tls_conn(server: &Server, token: &str, ca: &Path) -> Connection {
    Connection {
        server: format!("https://localhost:{}", server.addr.port()),
        token: token.into(),
        ca: Some(ca.to_owned()),
        identity: None,
    }
}

async fn list_calls(c: &Connection) -> anyhow::Result<pb::ListCallsResponse> {
    Ok(c.supervisor()
        .await?
        .list_calls(pb::ListCallsRequest::default())
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_on_a_network_address_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let err = format!("{:#}", Server::start(cfg.clone()).await.err().expect("refused"));
    assert!(err.starts_with("refusing to serve plaintext on 0.0.0.0:0"), "{err}");
    cfg.allow_plaintext = true;
    Server::start(cfg)
        .await
        .expect("served when allowed")
        .stop()
        .await
        .unwrap();

    // The operator's view: one error line, exit code 1.
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[[auth.tokens]]\ntoken = \"long-enough\"\nrole = \"admin\"\n",
    )
    .unwrap();
    let output = common::callwatch()
        .args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .code(1)
        .stderr(predicate::str::contains("refusing to serve plaintext on 0.0.0.0:0"))
        .get_output()
        .stderr
        .clone();
    assert_eq!(String::from_utf8(output).unwrap().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, stranger_ca) = (ca(), ca(), ca());
    let mut files = server_files(dir.path(), &server_ca);
    files.client_ca = Some(write_ca(dir.path(), "clients.pem", &client_ca));
    let server_ca_path = write_ca(dir.path(), "server-ca.pem", &server_ca);
    let mut cfg = config(&dir.path().join("data"));
    cfg.tls = Some(files);
    let server = Server::start(cfg).await.unwrap();

    // No client certificate: the handshake fails, no RPC is answered.
    let anonymous = tls_conn(&server, SUP_ALL, &server_ca_path);
    assert!(
        list_calls(&anonymous).await.is_err(),
        "a client without a certificate got through"
    );

    // A client certificate, as `callwatch … --cert --key` sends it.
    let with_cert = |issuer: &Issuer, name: &str| {
        let (cert, key) = issue(issuer, "softphone-1", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let (cert_path, key_path) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        Connection {
            identity: Some(ClientIdentity {
                cert: cert_path,
                key: key_path,
            }),
            ..tls_conn(&server, SUP_ALL, &server_ca_path)
        }
    };
    // A certificate from another CA: refused too.
    assert!(list_calls(&with_cert(&stranger_ca, "stranger")).await.is_err());
    // One from the configured CA, with a token: served.
    let trusted = with_cert(&client_ca, "trusted");
    assert!(list_calls(&trusted).await.unwrap().calls.is_empty());

    // The softphone on the command line, with the same certificate.
    let wav = dir.path().join("one_second.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&wav, spec).unwrap();
    for _ in 0..2 * 16_000 {
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    let identity = trusted.identity.clone().unwrap();
    let server_url = trusted.server.clone();
    let (cert, key) = (identity.cert, identity.key);
    tokio::task::spawn_blocking(move || {
        common::callwatch()
            .args([
                "softphone",
                "--server",
                &server_url,
                "--token",
                AGENT_A17,
                "--agent",
                "a17",
                "--team",
                "billing",
            ])
            .arg("--ca")
            .arg(&server_ca_path)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg(&wav)
            .timeout(Duration::from_secs(30))
            .assert()
            .success();
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

/// `seconds` of silence on both parties, streamed in real time.
fn real_time_call(call_id: &str, seconds: usize) -> SoftphoneCall {
    let silence = vec![0.0; 8_000 * seconds];
    SoftphoneCall {
        call_id: call_id.into(),
        agent_id: "a17".into(),
        team: "billing".into(),
        recording: Recording {
            sample_rate: 8_000,
            channels: vec![(Channel::Agent, silence.clone()), (Channel::Customer, silence)],
            repairs: Default::default(),
        },
        controls: Vec::new(),
        fast: false,
        drop_at_end: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_reaches_new_connections_while_a_live_call_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (ca(), ca());
    let files = server_files(dir.path(), &old_ca);
    let (old_ca_path, new_ca_path) = (
        write_ca(dir.path(), "old.pem", &old_ca),
        write_ca(dir.path(), "new.pem", &new_ca),
    );
    let mut cfg = config(&dir.path().join("data"));
    cfg.tls = Some(files);
    let server = Server::start(cfg).await.unwrap();
    assert!(list_calls(&tls_conn(&server, SUP_ALL, &new_ca_path)).await.is_err());

    // A call on a connection made with the old certificate.
    let agent = tls_conn(&server, AGENT_A17, &old_ca_path);
    let live = tokio::spawn(async move { client::softphone(&agent, real_time_call("tls-live", 6), |_| {}).await });
    tokio::time::sleep(Duration::from_secs(1)).await;

    server_files(dir.path(), &new_ca);
    let swapped = Instant::now();
    loop {
        if list_calls(&tls_conn(&server, SUP_ALL, &new_ca_path)).await.is_ok() {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(5),
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("new certificate served {:?} after the swap", swapped.elapsed());
    assert!(
        list_calls(&tls_conn(&server, SUP_ALL, &old_ca_path)).await.is_err(),
        "the old one is gone"
    );
    let calls = list_calls(&tls_conn(&server, SUP_ALL, &new_ca_path))
        .await
        .unwrap()
        .calls;
    assert!(
        calls
            .iter()
            .any(|c| c.call_id == "tls-live" && c.state == pb::CallState::Live as i32),
        "the call is live during the swap: {calls:?}"
    );

    let ended = live
        .await
        .unwrap()
        .expect("the call streams to its end")
        .expect("ended");
    let info = ended.call.unwrap();
    assert_eq!(info.state, pb::CallState::Ended as i32, "{info:?}");
    assert!(info.audio_s > 5.5, "{info:?}");
    server.stop().await.unwrap();
}
