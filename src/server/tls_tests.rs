//! SSL listeners beside a PLAINTEXT one, with certificates made here (rcgen): each listener's
//! clients get that listener's endpoints in Metadata; client certificates requested and
//! required; garbage and plaintext Kafka requests on a TLS port are closed without harm.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::test_broker::{free_port, TestBroker, TestResult};

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "sluice test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "broker");
    let (client_cert_pem, client_key_pem) = leaf(vec!["client".into()], "client");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.pem"), format!("{server_key}{server_cert}")).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca_cert.pem(),
        client_cert_pem,
        client_key_pem,
    }
}

fn connector(pki: &Pki, with_cert: bool) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::server::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain: Vec<_> = CertificateDer::pem_slice_iter(pki.client_cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Metadata v9 on `stream`: the brokers' (id, port), or None if the broker closed the stream.
async fn metadata_ports<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Option<Vec<(i32, i32)>> {
    let version = 9;
    let key = ApiKey::Metadata;
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("tls-test")))
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    MetadataRequest::default()
        .with_topics(Some(vec![]))
        .encode(&mut body, version)
        .unwrap();
    let mut frame = BytesMut::new();
    frame.put_u32(body.len() as u32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.ok()?;
    stream.flush().await.ok()?;
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.ok()?;
    let mut buf = bytes::Bytes::from(buf);
    ResponseHeader::decode(&mut buf, key.response_header_version(version)).unwrap();
    let resp = MetadataResponse::decode(&mut buf, version).unwrap();
    Some(resp.brokers.iter().map(|b| (b.node_id.0, b.port)).collect())
}

async fn tls_connect(
    port: u16,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// A closed connection: EOF (or a reset) within a few seconds.
async fn closed<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn ssl_listeners_beside_plaintext_with_client_certificates() -> TestResult {
    let pki = pki();
    let (plain, ssl, mtls) = (free_port(), free_port(), free_port());
    let p = |f: &str| pki.dir.path().join(f).display().to_string();
    let (broker, mut plain_conn) = TestBroker::start(
        vec![
            format!("listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl},MTLS://127.0.0.1:{mtls}"),
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL".into(),
            format!("ssl.keystore.location={}", p("server.pem")),
            format!("ssl.truststore.location={}", p("ca.pem")),
            "listener.name.ssl.ssl.client.auth=requested".into(),
            "listener.name.mtls.ssl.client.auth=required".into(),
        ],
        plain,
    )
    .await?;
    // Each listener's clients see that listener's port.
    assert_eq!(metadata_ports(&mut plain_conn).await, Some(vec![(1, i32::from(plain))]));
    let mut anon = tls_connect(ssl, &connector(&pki, false)).await?;
    assert_eq!(metadata_ports(&mut anon).await, Some(vec![(1, i32::from(ssl))]));
    let mut with_cert = tls_connect(ssl, &connector(&pki, true)).await?;
    assert_eq!(metadata_ports(&mut with_cert).await, Some(vec![(1, i32::from(ssl))]));
    let mut mutual = tls_connect(mtls, &connector(&pki, true)).await?;
    assert_eq!(metadata_ports(&mut mutual).await, Some(vec![(1, i32::from(mtls))]));
    // Required client certificates: without one the connection gets nothing (with TLS 1.3 the
    // client only learns it at its first read).
    match tls_connect(mtls, &connector(&pki, false)).await {
        Err(_) => {}
        Ok(mut s) => assert_eq!(metadata_ports(&mut s).await, None),
    }
    // A plaintext Kafka request, and garbage, on a TLS port: closed.
    let mut raw = TcpStream::connect(("127.0.0.1", ssl)).await?;
    assert_eq!(metadata_ports(&mut raw).await, None);
    let mut junk = TcpStream::connect(("127.0.0.1", ssl)).await?;
    junk.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5]).await?;
    junk.write_all(&[0u8; 4096]).await?;
    assert!(closed(&mut junk).await);
    // The others are still served.
    assert_eq!(metadata_ports(&mut anon).await, Some(vec![(1, i32::from(ssl))]));
    assert_eq!(metadata_ports(&mut plain_conn).await, Some(vec![(1, i32::from(plain))]));
    broker.stop().await
}

#[tokio::test]
async fn tls_settings_that_cannot_be_loaded_stop_the_broker_naming_the_setting() -> TestResult {
    let data = tempfile::tempdir()?;
    let config = crate::config::BrokerConfig::load(
        None,
        &[
            format!("listeners=SSL://127.0.0.1:{}", free_port()),
            "ssl.keystore.location=/nonexistent/server.pem".into(),
            format!("log.dirs={}", data.path().display()),
            "metrics.listener=".into(),
        ],
    )?;
    let err = crate::broker::run_on(config, crate::broker::Listen::Config, std::future::pending())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("ssl.keystore.location"), "{err:#}");
    Ok(())
}
