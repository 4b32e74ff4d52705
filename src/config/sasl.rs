//! A SASL listener's settings, with Kafka's names, each global or for one listener
//! (`listener.name.<listener>.<key>`, which wins):
//!
//! - `sasl.enabled.mechanisms`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (Kafka's default, GSSAPI,
//!   is not supported, so a SASL listener must name its mechanisms);
//! - PLAIN's users, as Kafka's JAAS line
//!   `listener.name.<l>.plain.sasl.jaas.config=...PlainLoginModule required user_<name>="<password>";`
//!   (`username`/`password` there are the broker's own, for inter-broker use);
//! - `connections.max.reauth.ms` (also `listener.name.<l>.<mechanism>.connections.max.reauth.ms`):
//!   the session lifetime after which a client re-authenticates (KIP-368), 0 = none;
//! - `sasl.server.max.receive.size`: the largest frame before authentication completes;
//! - `connection.failed.authentication.delay.ms`: how long a failed client waits before its
//!   answer and the close.
//!
//! SCRAM users are not configured here: their credentials are in the cluster metadata.

use std::collections::BTreeMap;

use super::{invalid, ConfigError};
use crate::security::SaslMechanism;

/// A SASL listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanisms: Vec<SaslMechanism>,
    /// PLAIN's users and passwords (from the JAAS line).
    pub plain_users: BTreeMap<String, String>,
    /// Session lifetime per enabled mechanism (0: sessions do not expire).
    pub reauth_ms: BTreeMap<SaslMechanism, u64>,
    pub max_receive_size: usize,
    pub failed_authentication_delay_ms: u64,
}

impl SaslSettings {
    pub fn reauth_ms(&self, mechanism: SaslMechanism) -> u64 {
        self.reauth_ms.get(&mechanism).copied().unwrap_or(0)
    }
}

const KEYS: &[&str] = &[
    "sasl.enabled.mechanisms",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.server.max.receive.size",
    "connections.max.reauth.ms",
    "connection.failed.authentication.delay.ms",
];

/// Whether `key` (with any `listener.name.<l>.` prefix removed) is a SASL setting.
pub fn accepts(key: &str) -> bool {
    if KEYS.contains(&key) {
        return true;
    }
    let Some((mechanism, rest)) = split_mechanism(key) else {
        return false;
    };
    SaslMechanism::parse(&mechanism).is_some() && matches!(rest, "sasl.jaas.config" | "connections.max.reauth.ms")
}

/// `scram-sha-256.sasl.jaas.config` → ("SCRAM-SHA-256", "sasl.jaas.config") (mechanism names
/// have no dots).
fn split_mechanism(key: &str) -> Option<(String, &str)> {
    let (mechanism, rest) = key.split_once('.')?;
    Some((mechanism.to_ascii_uppercase(), rest))
}

/// Whether `key` is one of the global SASL keys (read before the other keys are applied).
pub fn is_global_key(key: &str) -> bool {
    KEYS.contains(&key)
}

fn setting<'a>(raw: &'a BTreeMap<String, String>, listener: &str, key: &str) -> Option<(String, &'a str)> {
    let specific = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
    if let Some(v) = raw.get(&specific) {
        return Some((specific, v.as_str()));
    }
    raw.get(key).map(|v| (key.to_string(), v.as_str()))
}

fn number(key: &str, text: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n: i64 = text
        .trim()
        .parse()
        .map_err(|_| invalid(key, format!("`{text}` is not a number")))?;
    u64::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| invalid(key, format!("{n} is outside [{min}, {max}]")))
}

/// The settings of SASL listener `listener`.
pub fn settings(raw: &BTreeMap<String, String>, listener: &str) -> Result<SaslSettings, ConfigError> {
    let Some((key, text)) = setting(raw, listener, "sasl.enabled.mechanisms") else {
        return Err(invalid(
            "sasl.enabled.mechanisms",
            format!(
                "listener {listener} is SASL: name its mechanisms (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); Kafka's default, GSSAPI, is not supported"
            ),
        ));
    };
    let mut mechanisms = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let m = SaslMechanism::parse(name).ok_or_else(|| {
            invalid(
                &key,
                format!("`{name}` is not supported (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are)"),
            )
        })?;
        if !mechanisms.contains(&m) {
            mechanisms.push(m);
        }
    }
    if mechanisms.is_empty() {
        return Err(invalid(&key, format!("listener {listener}: no SASL mechanism enabled")));
    }
    let mut plain_users = BTreeMap::new();
    let jaas_key = format!("listener.name.{}.plain.sasl.jaas.config", listener.to_ascii_lowercase());
    if mechanisms.contains(&SaslMechanism::Plain) {
        let text = raw.get(&jaas_key).ok_or_else(|| {
            invalid(
                &jaas_key,
                format!("PLAIN is enabled on listener {listener}: its users come from this JAAS line (PlainLoginModule required user_<name>=\"<password>\";)"),
            )
        })?;
        let (module, options) = parse_jaas(text).map_err(|why| invalid(&jaas_key, why))?;
        if !module.ends_with("PlainLoginModule") {
            return Err(invalid(&jaas_key, format!("`{module}` is not PlainLoginModule")));
        }
        for (k, v) in options {
            if let Some(user) = k.strip_prefix("user_") {
                plain_users.insert(user.to_string(), v);
            }
        }
        if plain_users.is_empty() {
            return Err(invalid(&jaas_key, "no user_<name>=\"<password>\" option"));
        }
    }
    for m in SaslMechanism::ALL.into_iter().filter(|m| m.scram().is_some()) {
        let key = format!(
            "listener.name.{}.{}.sasl.jaas.config",
            listener.to_ascii_lowercase(),
            m.name().to_ascii_lowercase()
        );
        if let Some(text) = raw.get(&key) {
            let (module, _) = parse_jaas(text).map_err(|why| invalid(&key, why))?;
            if !module.ends_with("ScramLoginModule") {
                return Err(invalid(&key, format!("`{module}` is not ScramLoginModule")));
            }
        }
    }
    let mut reauth_ms = BTreeMap::new();
    for &m in &mechanisms {
        let specific = format!(
            "listener.name.{}.{}.connections.max.reauth.ms",
            listener.to_ascii_lowercase(),
            m.name().to_ascii_lowercase()
        );
        let found = match raw.get(&specific) {
            Some(v) => Some((specific, v.as_str())),
            None => setting(raw, listener, "connections.max.reauth.ms"),
        };
        if let Some((k, v)) = found {
            reauth_ms.insert(m, number(&k, v, 0, i64::MAX as u64)?);
        }
    }
    let max_receive_size = match setting(raw, listener, "sasl.server.max.receive.size") {
        Some((k, v)) => usize::try_from(number(&k, v, 1, i32::MAX as u64)?).unwrap_or(usize::MAX),
        None => 524_288,
    };
    let failed_authentication_delay_ms = match setting(raw, listener, "connection.failed.authentication.delay.ms") {
        Some((k, v)) => number(&k, v, 0, 60_000)?,
        None => 100,
    };
    Ok(SaslSettings {
        mechanisms,
        plain_users,
        reauth_ms,
        max_receive_size,
        failed_authentication_delay_ms,
    })
}

/// One JAAS entry: `<LoginModule class> <flag> key="value" ... ;` (values quoted or bare).
fn parse_jaas(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let text = text.trim();
    let body = text.strip_suffix(';').unwrap_or(text).trim();
    let mut rest = body;
    let mut word = || -> Option<String> {
        let trimmed = rest.trim_start();
        let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        let (w, r) = trimmed.split_at(end);
        rest = r;
        (!w.is_empty()).then(|| w.to_string())
    };
    let module = word().ok_or("empty JAAS configuration")?;
    let flag = word().ok_or("no control flag after the login module")?;
    if !matches!(flag.as_str(), "required" | "requisite" | "sufficient" | "optional") {
        return Err(format!("`{flag}` is not a JAAS control flag"));
    }
    let mut options = Vec::new();
    let mut chars = rest.trim_start().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!("option `{key}` has no value"));
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("option `{key}`: unterminated quote")),
                    Some('"') => break,
                    Some('\\') => v.extend(chars.next()),
                    Some(c) => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect()
        };
        options.push((key, value));
    }
    Ok((module, options))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn jaas_lines_and_mechanisms_as_kafka_writes_them() {
        let r = raw(&[
            ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-512"),
            (
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="a\"b c";"#,
            ),
            (
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            ),
            ("connections.max.reauth.ms", "60000"),
            ("listener.name.sasl_ssl.plain.connections.max.reauth.ms", "5000"),
        ]);
        let s = settings(&r, "SASL_SSL").unwrap();
        assert_eq!(s.mechanisms, [SaslMechanism::Plain, SaslMechanism::ScramSha512]);
        assert_eq!(s.plain_users.get("alice").map(String::as_str), Some("a\"b c"));
        assert_eq!(s.plain_users.len(), 2);
        assert_eq!(
            (
                s.reauth_ms(SaslMechanism::Plain),
                s.reauth_ms(SaslMechanism::ScramSha512)
            ),
            (5000, 60000)
        );
        assert_eq!((s.max_receive_size, s.failed_authentication_delay_ms), (524_288, 100));
        assert!(accepts("scram-sha-512.sasl.jaas.config"));
        assert!(accepts("plain.connections.max.reauth.ms"));
        assert!(!accepts("gssapi.sasl.jaas.config"));
        assert!(!accepts("sasl.kerberos.service.name"));
    }

    #[test]
    fn unsupported_or_incomplete_sasl_settings_are_refused() {
        let err = |items: &[(&str, &str)]| settings(&raw(items), "SASL_PLAINTEXT").unwrap_err().to_string();
        assert!(err(&[]).contains("GSSAPI"));
        assert!(err(&[("sasl.enabled.mechanisms", "GSSAPI")]).contains("GSSAPI"));
        assert!(err(&[("sasl.enabled.mechanisms", "PLAIN")]).contains("jaas"));
        assert!(err(&[
            ("sasl.enabled.mechanisms", "PLAIN"),
            (
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "x.PlainLoginModule required username=\"a\";"
            )
        ])
        .contains("user_"));
        assert!(err(&[
            ("sasl.enabled.mechanisms", "PLAIN"),
            (
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "x.PlainLoginModule required user_a=\"b;"
            )
        ])
        .contains("quote"));
        assert!(err(&[
            ("sasl.enabled.mechanisms", "SCRAM-SHA-256"),
            ("connections.max.reauth.ms", "-1")
        ])
        .contains("outside"));
    }
}
