//! TLS for SSL listeners (rustls, the ring provider): the server configuration built from a
//! listener's `ssl.*` settings (PEM key store and trust store, `ssl.client.auth`,
//! `ssl.enabled.protocols`), and the handshake, bounded in time, that turns an accepted socket
//! into a TLS stream. A plaintext client or garbage on a TLS port fails the handshake and is
//! closed, as Kafka's SSL listener does; nothing of it reaches the request path.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, SslSettings};

/// How long a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a listener's TLS configuration could not be built; names the setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{setting}: {reason}")]
    Material { setting: &'static str, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn material(setting: &'static str, reason: impl std::fmt::Display) -> TlsConfigError {
    TlsConfigError::Material {
        setting,
        reason: reason.to_string(),
    }
}

fn certs_from(
    setting: &'static str,
    path: Option<&std::path::Path>,
    inline: Option<&str>,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs: Result<Vec<_>, _> = match (path, inline) {
        (Some(p), _) => CertificateDer::pem_file_iter(p)
            .map_err(|e| material(setting, format!("{}: {e}", p.display())))?
            .collect(),
        (None, Some(text)) => CertificateDer::pem_slice_iter(text.as_bytes()).collect(),
        (None, None) => Ok(Vec::new()),
    };
    let certs = certs.map_err(|e| material(setting, e))?;
    if certs.is_empty() {
        return Err(material(setting, "no PEM certificate found"));
    }
    Ok(certs)
}

fn key_from(
    setting: &'static str,
    path: Option<&std::path::Path>,
    inline: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    match (path, inline) {
        (Some(p), _) => PrivateKeyDer::from_pem_file(p).map_err(|e| material(setting, format!("{}: {e}", p.display()))),
        (None, Some(text)) => PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| material(setting, e)),
        (None, None) => Err(material(setting, "no private key")),
    }
}

/// rustls's ring provider: no C toolchain beyond what ring builds (aws-lc-rs needs cmake), at
/// the cost of no post-quantum key exchange (which Kafka's JVM does not offer either), hence
/// rustls's deprecation note on it.
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server configuration of a TLS listener. Reads the PEM files.
pub fn server_config(ssl: &SslSettings) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let (chain_setting, key_setting) = if ssl.keystore_location.is_some() {
        ("ssl.keystore.location", "ssl.keystore.location")
    } else {
        ("ssl.keystore.certificate.chain", "ssl.keystore.key")
    };
    let chain = certs_from(
        chain_setting,
        ssl.keystore_location.as_deref(),
        ssl.keystore_certificate_chain.as_deref(),
    )?;
    let key = key_from(
        key_setting,
        ssl.keystore_location.as_deref(),
        ssl.keystore_key.as_deref(),
    )?;
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if ssl.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if ssl.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider)).with_protocol_versions(&versions)?;
    let builder = match ssl.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let setting = if ssl.truststore_location.is_some() {
                "ssl.truststore.location"
            } else {
                "ssl.truststore.certificates"
            };
            let mut roots = RootCertStore::empty();
            for ca in certs_from(
                setting,
                ssl.truststore_location.as_deref(),
                ssl.truststore_certificates.as_deref(),
            )? {
                roots.add(ca).map_err(|e| material(setting, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| material(setting, e))?)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| material(key_setting, e))?;
    Ok(Arc::new(config))
}

/// The TLS handshake on an accepted socket, within [`HANDSHAKE_TIMEOUT`].
pub async fn accept(acceptor: &TlsAcceptor, socket: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}
