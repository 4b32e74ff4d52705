//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka's `ScramSaslServer` runs
//! them: client-first (`n,[a=authzid],n=user,r=nonce[,ext]`), server-first
//! (`r=nonce,s=salt,i=iterations`), client-final (`c=..,r=..,p=proof`), server-final
//! (`v=signature`). No channel binding (gs2 flag `n` only), no SASLprep (Kafka does none),
//! no delegation tokens.
//!
//! A credential is what the metadata keeps per user and mechanism (Kafka's
//! `ScramCredential`): salt, StoredKey, ServerKey and iterations, never the password.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};
use serde::{Deserialize, Serialize};

use super::{constant_time_eq, AuthError};

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// Kafka's iteration bounds, the same for both.
    pub const MIN_ITERATIONS: i32 = 4096;
    pub const MAX_ITERATIONS: i32 = 16384;

    /// The code AlterUserScramCredentials and DescribeUserScramCredentials use.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Sha256),
            2 => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// The hash's output length (SaltedPassword, keys and proofs have it).
    pub fn output_len(self) -> usize {
        self.digest_algorithm().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data).as_ref().to_vec()
    }

    /// Hi(password, salt, i): PBKDF2 with this hash. `None` for a non-positive count.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Option<Vec<u8>> {
        let rounds = std::num::NonZeroU32::new(u32::try_from(iterations).ok()?)?;
        let mut out = vec![0u8; self.output_len()];
        pbkdf2::derive(self.pbkdf2_algorithm(), rounds, salt, password, &mut out);
        Some(out)
    }
}

/// What the metadata keeps for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ScramCredential {
    /// From SaltedPassword, as AlterUserScramCredentials sends it (the client salted and hashed).
    pub fn from_salted_password(mechanism: ScramMechanism, salt: &[u8], salted: &[u8], iterations: i32) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            iterations,
        }
    }
}

/// A fresh random nonce: `bytes` random bytes as letters and digits (Kafka's are too; some
/// clients, librdkafka 2.0 among them, mishandle other characters in the server's nonce).
pub fn random_token(bytes: usize) -> Option<String> {
    let mut raw = vec![0u8; bytes];
    ring::rand::SystemRandom::new().fill(&mut raw).ok()?;
    Some(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// What one client message gets back.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The server-first message; the exchange goes on.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; `reply` is the server-final message.
    Done { user: String, reply: Vec<u8> },
}

enum State {
    ClientFirst,
    ClientFinal {
        user: String,
        client_first_bare: String,
        server_first: String,
        client_nonce: String,
        nonce: String,
        credential: ScramCredential,
    },
    Finished,
}

/// One SCRAM exchange, server side.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

fn hidden(why: &str) -> AuthError {
    AuthError::Hidden(why.to_string())
}

/// `saslname` of RFC 5802 (ASCII without `,`; `=` only as `=2C` or `=3D`), unescaped.
fn sasl_name(escaped: &str) -> Option<String> {
    if escaped.is_empty() || !escaped.bytes().all(|b| (0x01..=0x7f).contains(&b) && b != b',') {
        return None;
    }
    let mut out = String::new();
    let mut rest = escaped;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("=2C") {
            out.push(',');
            rest = r;
        } else if let Some(r) = after.strip_prefix("=3D") {
            out.push('=');
            rest = r;
        } else {
            return None;
        }
    }
    out.push_str(rest);
    Some(out)
}

fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        ScramServer {
            mechanism,
            state: State::ClientFirst,
        }
    }

    /// Takes the next client message. `lookup` finds a user's credential for this mechanism;
    /// `server_nonce` is this exchange's random part of the nonce.
    pub fn step(
        &mut self,
        token: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Step, AuthError> {
        let text = std::str::from_utf8(token).map_err(|_| hidden("SCRAM message is not UTF-8"))?;
        match std::mem::replace(&mut self.state, State::Finished) {
            State::ClientFirst => self.client_first(text, lookup, server_nonce),
            State::ClientFinal {
                user,
                client_first_bare,
                server_first,
                client_nonce,
                nonce,
                credential,
            } => {
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or_else(|| hidden("Invalid SCRAM client final message format"))?;
                let mut fields = without_proof.split(',');
                let channel = fields.next().and_then(|f| f.strip_prefix("c="));
                let final_nonce = fields.next().and_then(|f| f.strip_prefix("r="));
                let (Some(_), Some(final_nonce)) = (channel, final_nonce) else {
                    return Err(hidden("Invalid SCRAM client final message format"));
                };
                // librdkafka before 2.6.1 repeats its own nonce in front of the server's
                // (librdkafka#4895); Kafka 3.8.1-3.9 accept that form (the server nonce is still
                // there, so a replay still fails), and so do we: Debian's kcat is 2.0.
                let buggy_librdkafka = final_nonce
                    .strip_prefix(client_nonce.as_str())
                    .is_some_and(|rest| rest == nonce);
                if final_nonce != nonce && !buggy_librdkafka {
                    return Err(hidden("Invalid client nonce in the final client message."));
                }
                let proof = STANDARD
                    .decode(proof)
                    .map_err(|_| hidden("Invalid SCRAM client proof encoding"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let m = self.mechanism;
                let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != client_signature.len() {
                    return Err(hidden("Invalid client credentials"));
                }
                let client_key: Vec<u8> = client_signature.iter().zip(&proof).map(|(a, b)| a ^ b).collect();
                if !constant_time_eq(&m.hash(&client_key), &credential.stored_key) {
                    return Err(hidden("Invalid client credentials"));
                }
                let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
                Ok(Step::Done {
                    user,
                    reply: format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
                })
            }
            State::Finished => Err(hidden("Unexpected message after the SCRAM exchange finished")),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Step, AuthError> {
        let invalid = || hidden("Invalid SCRAM client first message format");
        let rest = text.strip_prefix("n,").ok_or_else(invalid)?;
        let (authzid, bare) = rest.split_once(',').ok_or_else(invalid)?;
        let authzid = match authzid {
            "" => None,
            a => Some(a.strip_prefix("a=").and_then(sasl_name).ok_or_else(invalid)?),
        };
        let mut fields = bare.split(',');
        let user = fields
            .next()
            .and_then(|f| f.strip_prefix("n="))
            .and_then(sasl_name)
            .ok_or_else(invalid)?;
        let client_nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| valid_nonce(n))
            .ok_or_else(invalid)?;
        for ext in fields {
            let (key, _) = ext.split_once('=').ok_or_else(invalid)?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid());
            }
            if key == "tokenauth" {
                return Err(hidden(
                    "Token Authentication failed: delegation tokens are not supported",
                ));
            }
        }
        let credential = lookup(&user).ok_or_else(|| hidden("Authentication failed: Invalid user credentials"))?;
        if authzid.as_ref().is_some_and(|a| *a != user) {
            return Err(AuthError::Visible(
                "Authentication failed: Client requested an authorization id that is different from username".into(),
            ));
        }
        if credential.iterations < ScramMechanism::MIN_ITERATIONS {
            return Err(hidden("Iterations below the minimum"));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        let challenge = server_first.clone().into_bytes();
        self.state = State::ClientFinal {
            user,
            client_first_bare: bare.to_string(),
            server_first,
            client_nonce: client_nonce.to_string(),
            nonce,
            credential,
        };
        Ok(Step::Challenge(challenge))
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
pub(crate) mod tests;
