//! The broker's listeners, with Kafka's names: `listeners` (several named entries),
//! `listener.security.protocol.map` (each name's protocol; Kafka's default maps PLAINTEXT, SSL,
//! SASL_PLAINTEXT and SASL_SSL to themselves, and the controller listeners to PLAINTEXT),
//! `advertised.listeners` (per name; a listener without one advertises its own address), and
//! a TLS listener's `ssl.*` settings, each either global or for one listener
//! (`listener.name.<name in lower case>.ssl.keystore.location`, which wins).
//!
//! TLS key material is PEM only (`ssl.keystore.type=PEM`, `ssl.truststore.type=PEM`): a key
//! store file holding the private key and the certificate chain (`ssl.keystore.location`), or
//! both inline (`ssl.keystore.key`, `ssl.keystore.certificate.chain`); trusted CAs for client
//! certificates in `ssl.truststore.location` or inline `ssl.truststore.certificates`. The files
//! are read when the listener starts (`server::tls`), not here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::sasl::{self, SaslSettings};
use super::{invalid, parse_socket_addr, ConfigError, ListenerSpec};

/// A listener's security protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(Self::Plaintext),
            "SSL" => Some(Self::Ssl),
            "SASL_PLAINTEXT" => Some(Self::SaslPlaintext),
            "SASL_SSL" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn is_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// A TLS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslSettings {
    /// `ssl.keystore.location`: a PEM file with the private key and the certificate chain.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.keystore.certificate.chain` and `ssl.keystore.key`: the same, inline.
    pub keystore_certificate_chain: Option<String>,
    pub keystore_key: Option<String>,
    /// `ssl.truststore.location` / `ssl.truststore.certificates`: CAs for client certificates.
    pub truststore_location: Option<PathBuf>,
    pub truststore_certificates: Option<String>,
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`: TLSv1.2 and/or TLSv1.3 (default both).
    pub tls12: bool,
    pub tls13: bool,
}

/// One broker (non-controller) listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerListener {
    /// Upper case, as in `listeners`.
    pub name: String,
    pub addr: SocketAddr,
    pub protocol: SecurityProtocol,
    /// From `advertised.listeners` (its own address if absent; 0.0.0.0 becomes 127.0.0.1).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// Present for SSL and SASL_SSL.
    pub ssl: Option<SslSettings>,
    /// Present for SASL_PLAINTEXT and SASL_SSL.
    pub sasl: Option<SaslSettings>,
}

/// Whether `key` is one this module reads (collected before the other keys are applied).
pub fn is_listener_key(key: &str) -> bool {
    key == "listener.security.protocol.map"
        || key.starts_with("ssl.")
        || key.starts_with("listener.name.")
        || super::sasl::is_global_key(key)
}

/// The ssl.* keys a listener takes. `ssl.endpoint.identification.algorithm`, `ssl.protocol`
/// and `ssl.cipher.suites` are accepted for configs carried over from Kafka and change
/// nothing on the server side (rustls negotiates its own safe suites).
const SSL_KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.endpoint.identification.algorithm",
    "ssl.protocol",
    "ssl.cipher.suites",
];

/// Kafka's default protocol map, plus the controller listeners (PLAINTEXT).
fn protocol_map(
    raw: &BTreeMap<String, String>,
    controller_names: &[String],
) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let key = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    match raw.get(key) {
        Some(text) => {
            for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (name, proto) = item
                    .split_once(':')
                    .ok_or_else(|| invalid(key, format!("`{item}` is not NAME:PROTOCOL")))?;
                let proto = SecurityProtocol::parse(proto)
                    .ok_or_else(|| invalid(key, format!("`{proto}` is not a security protocol")))?;
                map.insert(name.trim().to_ascii_uppercase(), proto);
            }
        }
        None => {
            for p in [
                SecurityProtocol::Plaintext,
                SecurityProtocol::Ssl,
                SecurityProtocol::SaslPlaintext,
                SecurityProtocol::SaslSsl,
            ] {
                map.insert(p.name().to_string(), p);
            }
        }
    }
    for c in controller_names {
        map.entry(c.clone()).or_insert(SecurityProtocol::Plaintext);
    }
    Ok(map)
}

/// A setting for listener `name`: `listener.name.<name>.<key>` if set, else `<key>`.
fn setting<'a>(raw: &'a BTreeMap<String, String>, name: &str, key: &str) -> Option<(String, &'a str)> {
    let specific = format!("listener.name.{}.{key}", name.to_ascii_lowercase());
    if let Some(v) = raw.get(&specific) {
        return Some((specific, v.as_str()));
    }
    raw.get(key).map(|v| (key.to_string(), v.as_str()))
}

fn ssl_settings(raw: &BTreeMap<String, String>, name: &str) -> Result<SslSettings, ConfigError> {
    let get = |key: &str| setting(raw, name, key).filter(|(_, v)| !v.trim().is_empty());
    for store in ["ssl.keystore.type", "ssl.truststore.type"] {
        if let Some((k, v)) = get(store) {
            if !v.trim().eq_ignore_ascii_case("PEM") {
                return Err(invalid(
                    &k,
                    format!("`{v}`: only PEM key and trust stores are supported"),
                ));
            }
        }
    }
    if let Some((k, _)) = get("ssl.key.password") {
        return Err(invalid(
            &k,
            "encrypted private keys are not supported yet: give the key unencrypted (PKCS#8 PEM)",
        ));
    }
    let keystore_location = get("ssl.keystore.location").map(|(_, v)| PathBuf::from(v.trim()));
    let keystore_certificate_chain = get("ssl.keystore.certificate.chain").map(|(_, v)| v.to_string());
    let keystore_key = get("ssl.keystore.key").map(|(_, v)| v.to_string());
    let inline = keystore_certificate_chain.is_some() || keystore_key.is_some();
    if keystore_location.is_some() && inline {
        return Err(invalid(
            "ssl.keystore.location",
            format!("listener {name}: give ssl.keystore.location or the inline chain and key, not both"),
        ));
    }
    if keystore_location.is_none() && (keystore_certificate_chain.is_none() || keystore_key.is_none()) {
        return Err(invalid(
            "ssl.keystore.location",
            format!(
                "listener {name} is TLS: it needs ssl.keystore.location, or ssl.keystore.certificate.chain and ssl.keystore.key"
            ),
        ));
    }
    let truststore_location = get("ssl.truststore.location").map(|(_, v)| PathBuf::from(v.trim()));
    let truststore_certificates = get("ssl.truststore.certificates").map(|(_, v)| v.to_string());
    let client_auth = match get("ssl.client.auth") {
        None => ClientAuth::None,
        Some((k, v)) => match v.trim().to_ascii_lowercase().as_str() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => return Err(invalid(&k, format!("`{other}`: expected none, requested or required"))),
        },
    };
    if client_auth != ClientAuth::None && truststore_location.is_none() && truststore_certificates.is_none() {
        return Err(invalid(
            "ssl.client.auth",
            format!("listener {name}: client certificates need a trust store (ssl.truststore.location or ssl.truststore.certificates)"),
        ));
    }
    let (mut tls12, mut tls13) = (true, true);
    if let Some((k, v)) = get("ssl.enabled.protocols") {
        (tls12, tls13) = (false, false);
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p {
                "TLSv1.2" => tls12 = true,
                "TLSv1.3" => tls13 = true,
                other => {
                    return Err(invalid(
                        &k,
                        format!("`{other}`: only TLSv1.2 and TLSv1.3 are supported"),
                    ))
                }
            }
        }
        if !tls12 && !tls13 {
            return Err(invalid(&k, "no protocol enabled"));
        }
    }
    Ok(SslSettings {
        keystore_location,
        keystore_certificate_chain,
        keystore_key,
        truststore_location,
        truststore_certificates,
        client_auth,
        tls12,
        tls13,
    })
}

/// The broker listeners of `specs` (the controller ones left out), with their protocols,
/// advertised addresses and TLS settings. `raw` holds the keys [`is_listener_key`] accepts.
pub fn resolve(
    specs: &[ListenerSpec],
    advertised: Option<&[ListenerSpec]>,
    controller_names: &[String],
    raw: &BTreeMap<String, String>,
) -> Result<Vec<BrokerListener>, ConfigError> {
    for key in raw.keys() {
        let generic = match key.strip_prefix("listener.name.") {
            Some(rest) => match rest.split_once('.') {
                Some((listener, k)) if specs.iter().any(|s| s.name.eq_ignore_ascii_case(listener)) => k,
                _ => return Err(invalid(key, "names no listener of `listeners`")),
            },
            None => key.as_str(),
        };
        if generic != "listener.security.protocol.map" && !SSL_KEYS.contains(&generic) && !sasl::accepts(generic) {
            return Err(ConfigError::UnknownKey(key.clone()));
        }
    }
    let map = protocol_map(raw, controller_names)?;
    let mut out = Vec::new();
    for spec in specs.iter().filter(|s| !controller_names.contains(&s.name)) {
        let protocol = *map.get(&spec.name).ok_or_else(|| {
            invalid(
                "listener.security.protocol.map",
                format!("no security protocol for listener {}", spec.name),
            )
        })?;
        let addr = parse_socket_addr("listeners", &spec.host, spec.port)?;
        let (host, port) = match advertised {
            Some(adv) => match adv.iter().find(|a| a.name == spec.name) {
                Some(a) => (a.host.clone(), a.port),
                None => (addr.ip().to_string(), addr.port()),
            },
            None => (addr.ip().to_string(), addr.port()),
        };
        let advertised_host = if host == "0.0.0.0" || host == "::" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        let ssl = if protocol.is_tls() {
            Some(ssl_settings(raw, &spec.name)?)
        } else {
            None
        };
        let sasl = if protocol.is_sasl() {
            Some(sasl::settings(raw, &spec.name)?)
        } else {
            None
        };
        out.push(BrokerListener {
            name: spec.name.clone(),
            addr,
            protocol,
            advertised_host,
            advertised_port: i32::from(port),
            ssl,
            sasl,
        });
    }
    if out.is_empty() {
        return Err(invalid("listeners", "no broker listener (only controller listeners)"));
    }
    if let Some(adv) = advertised {
        if let Some(a) = adv.iter().find(|a| !specs.iter().any(|l| l.name == a.name)) {
            return Err(invalid(
                "advertised.listeners",
                format!("{} is not a listener of `listeners`", a.name),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::cluster::parse_listeners;

    fn raw(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn several_listeners_with_protocols_advertised_addresses_and_per_listener_ssl() {
        let specs = parse_listeners(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9093,INTERNAL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095",
        )
        .unwrap();
        let adv = parse_listeners("advertised.listeners", "SSL://broker.example:19093").unwrap();
        let r = raw(&[
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,SSL:SSL,INTERNAL:SSL",
            ),
            ("ssl.keystore.location", "/k.pem"),
            ("listener.name.internal.ssl.keystore.location", "/internal.pem"),
            ("listener.name.internal.ssl.truststore.location", "/ca.pem"),
            ("listener.name.internal.ssl.client.auth", "required"),
            ("ssl.enabled.protocols", "TLSv1.3"),
        ]);
        let ls = resolve(&specs, Some(&adv), &["CONTROLLER".to_string()], &r).unwrap();
        assert_eq!(
            ls.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["PLAINTEXT", "SSL", "INTERNAL"]
        );
        assert_eq!(
            (ls[0].protocol, ls[0].ssl.is_none()),
            (SecurityProtocol::Plaintext, true)
        );
        assert_eq!(
            (ls[1].advertised_host.as_str(), ls[1].advertised_port),
            ("broker.example", 19093)
        );
        assert_eq!(
            (ls[2].advertised_host.as_str(), ls[2].advertised_port),
            ("127.0.0.1", 9094)
        );
        let ssl = ls[1].ssl.as_ref().unwrap();
        assert_eq!(
            (ssl.keystore_location.as_deref(), ssl.client_auth, ssl.tls12, ssl.tls13),
            (Some(std::path::Path::new("/k.pem")), ClientAuth::None, false, true)
        );
        let internal = ls[2].ssl.as_ref().unwrap();
        assert_eq!(
            internal.keystore_location.as_deref(),
            Some(std::path::Path::new("/internal.pem"))
        );
        assert_eq!(internal.client_auth, ClientAuth::Required);
    }

    #[test]
    fn bad_listener_settings_are_refused_naming_the_key() {
        let specs = parse_listeners("listeners", "SSL://127.0.0.1:9093").unwrap();
        let err = |items: &[(&str, &str)]| resolve(&specs, None, &[], &raw(items)).unwrap_err().to_string();
        assert!(err(&[]).contains("ssl.keystore.location"));
        assert!(err(&[("ssl.keystore.location", "/k"), ("ssl.keystore.type", "JKS")]).contains("only PEM"));
        assert!(err(&[("ssl.keystore.location", "/k"), ("ssl.client.auth", "required")]).contains("trust store"));
        assert!(err(&[("ssl.keystore.location", "/k"), ("ssl.enabled.protocols", "TLSv1.1")]).contains("TLSv1.1"));
        assert!(err(&[("ssl.keystore.location", "/k"), ("ssl.bogus", "1")]).contains("ssl.bogus"));
        assert!(err(&[
            ("ssl.keystore.location", "/k"),
            ("listener.name.other.ssl.client.auth", "none")
        ])
        .contains("no listener"));
        let sasl = parse_listeners("listeners", "SASL_PLAINTEXT://127.0.0.1:9093").unwrap();
        assert!(resolve(&sasl, None, &[], &raw(&[]))
            .unwrap_err()
            .to_string()
            .contains("sasl.enabled.mechanisms"));
        let ok = resolve(
            &sasl,
            None,
            &[],
            &raw(&[("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "SCRAM-SHA-256")]),
        )
        .unwrap();
        assert_eq!(ok[0].sasl.as_ref().unwrap().mechanisms.len(), 1);
        let odd = parse_listeners("listeners", "WEIRD://127.0.0.1:9093").unwrap();
        assert!(resolve(&odd, None, &[], &raw(&[]))
            .unwrap_err()
            .to_string()
            .contains("no security protocol"));
    }
}
