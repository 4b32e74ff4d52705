//! SASL listeners end to end over TCP against a real broker: PLAIN from the JAAS line, SCRAM
//! users created with AlterUserScramCredentials, the framed (v1) and unframed (v0) flows,
//! Kafka's error answers and closes, re-authentication and session expiry, and what may not
//! come before authentication.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::test_broker::{free_port, TestBroker, TestResult};
use crate::security::scram::{tests::client_final, ScramMechanism};

async fn send_raw(s: &mut TcpStream, payload: &[u8]) -> Option<()> {
    let mut frame = BytesMut::new();
    frame.put_u32(payload.len() as u32);
    frame.extend_from_slice(payload);
    s.write_all(&frame).await.ok()
}

async fn read_raw(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(Bytes::from(buf))
}

/// One request and its response; `None` if the broker closed the connection instead.
async fn call<Req: Encodable, Resp: Decodable>(
    s: &mut TcpStream,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> Option<Resp> {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("sasl-test")))
        .encode(&mut body, key.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    send_raw(s, &body).await?;
    let mut buf = read_raw(s).await?;
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    Some(Resp::decode(&mut buf, version).unwrap())
}

async fn metadata(s: &mut TcpStream) -> Option<MetadataResponse> {
    call(
        s,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
    .await
}

async fn handshake(s: &mut TcpStream, version: i16, mechanism: &'static str) -> Option<SaslHandshakeResponse> {
    let req = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    call(s, ApiKey::SaslHandshake, version, &req).await
}

async fn authenticate(s: &mut TcpStream, version: i16, token: &[u8]) -> Option<SaslAuthenticateResponse> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
    call(s, ApiKey::SaslAuthenticate, version, &req).await
}

/// A full SCRAM exchange inside SaslAuthenticate (v1 handshake): the final response.
async fn scram_framed(s: &mut TcpStream, m: ScramMechanism, user: &str, password: &str) -> SaslAuthenticateResponse {
    let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
    let first = authenticate(s, 2, format!("n,,{bare}").as_bytes()).await.unwrap();
    if first.error_code != 0 {
        return first;
    }
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
    let last = client_final(m, password, &bare, &server_first);
    authenticate(s, 2, last.as_bytes()).await.unwrap()
}

async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn upsert(
    s: &mut TcpStream,
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> AlterUserScramCredentialsResponse {
    let salt = b"0123456789abcdef".to_vec();
    let salted = m.salted_password(password.as_bytes(), &salt, iterations).unwrap();
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.into()))
        .with_mechanism(m.code())
        .with_iterations(iterations)
        .with_salt(salt.into())
        .with_salted_password(salted.into())]);
    call(s, ApiKey::AlterUserScramCredentials, 0, &req).await.unwrap()
}

#[tokio::test]
async fn sasl_plain_and_scram_with_kafkas_answers() -> TestResult {
    let (plain, sasl) = (free_port(), free_port());
    let (broker, mut admin) = TestBroker::start(
        vec![
            format!("listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"),
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
            r#"listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";"#.into(),
            "connections.max.reauth.ms=1500".into(),
            "sasl.server.max.receive.size=4096".into(),
        ],
        plain,
    )
    .await?;
    let connect = || TcpStream::connect(("127.0.0.1", sasl));

    // The SASL APIs on a PLAINTEXT listener: ILLEGAL_SASL_STATE, as Kafka.
    assert_eq!(handshake(&mut admin, 1, "PLAIN").await.unwrap().error_code, 34);

    // Before authentication: only ApiVersions and SaslHandshake.
    let mut c = connect().await?;
    assert!(metadata(&mut c).await.is_none());
    let mut c = connect().await?;
    let versions: ApiVersionsResponse = call(&mut c, ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16));
    let hs = handshake(&mut c, 1, "PLAIN").await.unwrap();
    assert_eq!(hs.error_code, 0);
    assert_eq!(hs.mechanisms.len(), 3);
    let ok = authenticate(&mut c, 2, b"\0alice\0alice-secret").await.unwrap();
    assert_eq!((ok.error_code, ok.session_lifetime_ms), (0, 1500));
    assert!(metadata(&mut c).await.is_some());
    // After authentication, SaslAuthenticate is out of place.
    let again = authenticate(&mut c, 2, b"\0alice\0alice-secret").await.unwrap();
    assert_eq!(again.error_code, 34);

    // A wrong password: error 58 after the failure delay, then the close.
    let mut c = connect().await?;
    handshake(&mut c, 1, "PLAIN").await.unwrap();
    let started = Instant::now();
    let bad = authenticate(&mut c, 1, b"\0alice\0nope").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(90));
    assert_eq!(bad.error_code, 58);
    assert_eq!(
        bad.error_message.as_deref(),
        Some("Authentication failed: Invalid username or password")
    );
    assert!(closed(&mut c).await);

    // An unsupported mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled ones, then the close.
    let mut c = connect().await?;
    let hs = handshake(&mut c, 1, "GSSAPI").await.unwrap();
    assert_eq!((hs.error_code, hs.mechanisms.len()), (33, 3));
    assert!(closed(&mut c).await);

    // Oversize frames before authentication are refused (sasl.server.max.receive.size).
    let mut c = connect().await?;
    handshake(&mut c, 1, "PLAIN").await.unwrap();
    assert!(authenticate(&mut c, 1, &vec![b'x'; 8192]).await.is_none());

    // SCRAM users, created on the PLAINTEXT listener as kafka-configs does.
    let r = upsert(&mut admin, "bob", ScramMechanism::Sha256, "bob-secret", 4096).await;
    assert_eq!(r.results[0].error_code, 0);
    let r = upsert(&mut admin, "bob", ScramMechanism::Sha512, "bob-secret", 8192).await;
    assert_eq!(r.results[0].error_code, 0);
    let r = upsert(&mut admin, "carol", ScramMechanism::Sha256, "x", 100).await;
    assert_eq!(r.results[0].error_code, ResponseError::UnacceptableCredential.code());
    // One alteration per user and request (Kafka's controller): a second is DUPLICATE_RESOURCE
    // and neither applies; deleting what is not there is RESOURCE_NOT_FOUND.
    let salted = ScramMechanism::Sha256.salted_password(b"pw", b"salt", 4096).unwrap();
    let twice = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_static_str("dave"))
            .with_mechanism(1)
            .with_iterations(4096)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(salted.into())])
        .with_deletions(vec![ScramCredentialDeletion::default()
            .with_name(StrBytes::from_static_str("dave"))
            .with_mechanism(2)]);
    let r: AlterUserScramCredentialsResponse = call(&mut admin, ApiKey::AlterUserScramCredentials, 0, &twice)
        .await
        .unwrap();
    assert_eq!(r.results.len(), 1);
    assert_eq!(r.results[0].error_code, ResponseError::ResourceNotFound.code());
    let mut twice = twice;
    twice.deletions[0].mechanism = 1;
    let r: AlterUserScramCredentialsResponse = call(&mut admin, ApiKey::AlterUserScramCredentials, 0, &twice)
        .await
        .unwrap();
    assert_eq!(r.results[0].error_code, ResponseError::ResourceNotFound.code());
    twice.deletions.clear();
    twice.upsertions.push(twice.upsertions[0].clone().with_mechanism(2));
    let r: AlterUserScramCredentialsResponse = call(&mut admin, ApiKey::AlterUserScramCredentials, 0, &twice)
        .await
        .unwrap();
    assert_eq!(r.results[0].error_code, ResponseError::DuplicateResource.code());
    let described: DescribeUserScramCredentialsResponse = call(
        &mut admin,
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(StrBytes::from_static_str("bob")),
            UserName::default().with_name(StrBytes::from_static_str("nobody")),
        ])),
    )
    .await
    .unwrap();
    assert_eq!(described.results[0].credential_infos.len(), 2);
    assert_eq!(described.results[0].credential_infos[1].iterations, 8192);
    assert_eq!(described.results[1].error_code, ResponseError::ResourceNotFound.code());

    // SCRAM-SHA-256, framed.
    let mut c = connect().await?;
    handshake(&mut c, 1, "SCRAM-SHA-256").await.unwrap();
    let done = scram_framed(&mut c, ScramMechanism::Sha256, "bob", "bob-secret").await;
    assert_eq!(done.error_code, 0);
    assert!(done.auth_bytes.starts_with(b"v="));
    assert!(metadata(&mut c).await.is_some());
    // A wrong SCRAM password: the generic message (no hint whether the user exists).
    let mut c = connect().await?;
    handshake(&mut c, 1, "SCRAM-SHA-256").await.unwrap();
    let bad = scram_framed(&mut c, ScramMechanism::Sha256, "bob", "wrong").await;
    assert_eq!(bad.error_code, 58);
    assert_eq!(
        bad.error_message.as_deref(),
        Some(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
        )
    );
    assert!(closed(&mut c).await);
    let mut c = connect().await?;
    handshake(&mut c, 1, "SCRAM-SHA-512").await.unwrap();
    let unknown = scram_framed(&mut c, ScramMechanism::Sha512, "nobody", "x").await;
    assert_eq!(
        unknown.error_message,
        bad.error_message
            .map(|m| StrBytes::from_string(m.replace("256", "512")))
    );

    // SCRAM-SHA-512, unframed (a v0 handshake: raw tokens, as old clients).
    let mut c = connect().await?;
    handshake(&mut c, 0, "SCRAM-SHA-512").await.unwrap();
    let bare = "n=bob,r=abcdefgh";
    send_raw(&mut c, format!("n,,{bare}").as_bytes()).await.unwrap();
    let server_first = String::from_utf8(read_raw(&mut c).await.unwrap().to_vec())?;
    send_raw(
        &mut c,
        client_final(ScramMechanism::Sha512, "bob-secret", bare, &server_first).as_bytes(),
    )
    .await
    .unwrap();
    assert!(read_raw(&mut c).await.unwrap().starts_with(b"v="));
    assert!(metadata(&mut c).await.is_some());

    // Re-authentication (KIP-368): the session lasts 1.5 s; a client that re-authenticates in
    // time goes on, one that does not is closed at its next request.
    let mut keeps = connect().await?;
    handshake(&mut keeps, 1, "PLAIN").await.unwrap();
    authenticate(&mut keeps, 2, b"\0alice\0alice-secret").await.unwrap();
    let mut lapses = connect().await?;
    handshake(&mut lapses, 1, "PLAIN").await.unwrap();
    authenticate(&mut lapses, 2, b"\0alice\0alice-secret").await.unwrap();
    let mut switches = connect().await?;
    handshake(&mut switches, 1, "PLAIN").await.unwrap();
    authenticate(&mut switches, 2, b"\0alice\0alice-secret").await.unwrap();
    let mut other_user = connect().await?;
    handshake(&mut other_user, 1, "PLAIN").await.unwrap();
    authenticate(&mut other_user, 2, b"\0alice\0alice-secret")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(handshake(&mut keeps, 1, "PLAIN").await.unwrap().error_code, 0);
    let re = authenticate(&mut keeps, 2, b"\0alice\0alice-secret").await.unwrap();
    assert_eq!((re.error_code, re.session_lifetime_ms), (0, 1500));
    // Another mechanism, or another principal, is refused at re-authentication.
    assert_eq!(
        handshake(&mut switches, 1, "SCRAM-SHA-256").await.unwrap().error_code,
        0
    );
    assert!(authenticate(&mut switches, 2, b"n,,n=bob,r=x").await.is_none());
    assert_eq!(handshake(&mut other_user, 1, "PLAIN").await.unwrap().error_code, 0);
    let changed = authenticate(&mut other_user, 2, b"\0admin\0admin-secret")
        .await
        .unwrap();
    assert_eq!(changed.error_code, 58);
    assert!(changed.error_message.unwrap().contains("Cannot change principals"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(metadata(&mut keeps).await.is_some());
    assert!(metadata(&mut lapses).await.is_none());

    broker.stop().await
}
