//! Who a connection is: principals and the SASL mechanisms that establish them.
//!
//! Pure logic, no I/O: the SASL exchanges of PLAIN ([`plain`]) and SCRAM-SHA-256/512
//! ([`scram`]) as state machines over client tokens, and the credentials SCRAM keeps (salted
//! and hashed, never a password). The connection's authenticator (`server::sasl`) drives them;
//! the SCRAM credentials live in the cluster metadata (`controller`).

pub mod acl;
pub mod plain;
pub mod scram;

use std::fmt;

/// A connection's identity (Kafka's `KafkaPrincipal`): `User:ANONYMOUS` until a SASL exchange
/// names the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: &str) -> Self {
        Principal {
            kind: "User".to_string(),
            name: name.to_string(),
        }
    }

    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// The SASL mechanisms a listener may enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [Self::Plain, Self::ScramSha256, Self::ScramSha512];

    /// Kafka's (and the SASL registry's) name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Mechanism names are case-sensitive in Kafka.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash of this mechanism, if it is one.
    pub fn scram(self) -> Option<scram::ScramMechanism> {
        match self {
            Self::Plain => None,
            Self::ScramSha256 => Some(scram::ScramMechanism::Sha256),
            Self::ScramSha512 => Some(scram::ScramMechanism::Sha512),
        }
    }
}

/// Why an exchange failed, as the client will read it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Told to the client as is (Kafka's `SaslAuthenticationException`).
    #[error("{0}")]
    Visible(String),
    /// Told to the client only as "invalid credentials", never the reason (which could reveal
    /// whether a user exists); the reason is for the broker's debug log.
    #[error("{0}")]
    Hidden(String),
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
