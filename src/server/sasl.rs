//! A SASL listener's authenticator, one per connection (Kafka's `SaslServerAuthenticator`).
//!
//! Until authentication completes, the connection's frames come here instead of the API layer:
//! ApiVersions (served by the API layer, once) and SaslHandshake, then the mechanism's tokens,
//! inside SaslAuthenticate requests after a v1 handshake or as raw length-prefixed frames after
//! a v0 one (the flow old clients use). Anything else closes the connection, as Kafka does.
//! A failed exchange is answered after `connection.failed.authentication.delay.ms`, and the
//! connection closed.
//!
//! Once authenticated, frames go to the API layer, except that with
//! `connections.max.reauth.ms` the session expires: a client that said it can (SaslAuthenticate
//! v1+) re-authenticates on the same connection with a new SaslHandshake (KIP-368; same
//! mechanism, same principal), and any other request after expiry closes the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use crate::api::response_buf::ResponseBuf;
use crate::api::{self, Decoded, Outcome};
use crate::broker::Broker;
use crate::config::SaslSettings;
use crate::security::scram::{self, ScramServer, Step};
use crate::security::{plain, AuthError, Principal, SaslMechanism};
use kafka_protocol::ResponseError;

/// Kafka allows a re-authentication at most once a second.
const MIN_REAUTH_INTERVAL: Duration = Duration::from_secs(1);

/// What the connection does with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An ordinary request: the API layer serves it.
    Serve,
    /// Send what the authenticator wrote into the response buffer.
    Respond,
    /// Authentication failed: wait `delay`, send the response buffer if `respond`, close.
    Fail { delay: Duration, respond: bool },
    /// Close now, without an answer.
    Close,
}

enum Exchange {
    Plain,
    Scram(Box<ScramServer>),
}

enum State {
    /// Waiting for SaslHandshake (or, first, ApiVersions).
    Handshake {
        versions_seen: bool,
    },
    /// Tokens of `mechanism`: in SaslAuthenticate requests (`framed`), or raw frames.
    Authenticate {
        mechanism: SaslMechanism,
        framed: bool,
        exchange: Exchange,
    },
    /// A re-authentication asked for another mechanism: its next token fails.
    ReauthBadMechanism(String),
    Complete,
}

/// The authenticated session.
struct Session {
    mechanism: SaslMechanism,
    principal: Principal,
    expires: Option<Instant>,
}

pub struct Authenticator {
    settings: Arc<SaslSettings>,
    listener: Arc<str>,
    state: State,
    session: Option<Session>,
    /// A SaslAuthenticate v1+ was seen: the client can re-authenticate (KIP-368).
    reauth_capable: bool,
    /// Set while re-authenticating.
    reauth_started: Option<Instant>,
    anonymous: Principal,
}

impl Authenticator {
    pub fn new(settings: Arc<SaslSettings>, listener: Arc<str>) -> Self {
        Authenticator {
            settings,
            listener,
            state: State::Handshake { versions_seen: false },
            session: None,
            reauth_capable: false,
            reauth_started: None,
            anonymous: Principal::anonymous(),
        }
    }

    /// The largest frame the connection accepts now: `sasl.server.max.receive.size` until the
    /// first authentication completes.
    pub fn max_frame(&self, after_auth: usize) -> usize {
        if self.session.is_some() {
            after_auth
        } else {
            self.settings.max_receive_size.min(after_auth)
        }
    }

    /// The principal requests run as (ANONYMOUS before authentication).
    pub fn principal(&self) -> &Principal {
        self.session.as_ref().map_or(&self.anonymous, |s| &s.principal)
    }

    fn in_progress(&self) -> bool {
        !matches!(self.state, State::Complete)
    }

    fn fail_delay(&self) -> Duration {
        Duration::from_millis(self.settings.failed_authentication_delay_ms)
    }

    /// Decides what happens to `frame`; writes any answer into `out`.
    pub fn on_frame(&mut self, broker: &Broker, frame: &Bytes, out: &mut ResponseBuf) -> Verdict {
        out.clear();
        let key = frame.first_chunk::<2>().map(|k| i16::from_be_bytes(*k));
        if !self.in_progress() {
            let is_handshake = key == Some(ApiKey::SaslHandshake as i16);
            let now = Instant::now();
            let can_reauth = self.reauth_capable
                && self
                    .reauth_started
                    .is_none_or(|t| now.saturating_duration_since(t) >= MIN_REAUTH_INTERVAL);
            if is_handshake && can_reauth {
                self.reauth_started = Some(now);
                self.state = State::Handshake { versions_seen: true };
            } else if self.session.as_ref().and_then(|s| s.expires).is_some_and(|e| now >= e) {
                tracing::debug!(listener = %self.listener, "SASL session expired; closing the connection");
                return Verdict::Close;
            } else {
                return Verdict::Serve;
            }
        }
        match std::mem::replace(&mut self.state, State::Complete) {
            State::Handshake { versions_seen } => self.handshake(frame, key, versions_seen, out),
            State::Authenticate {
                mechanism,
                framed,
                exchange,
            } => self.authenticate(broker, frame, mechanism, framed, exchange, out),
            State::ReauthBadMechanism(why) => {
                tracing::debug!(listener = %self.listener, reason = %why, "re-authentication failed");
                self.failed(None);
                Verdict::Fail {
                    delay: self.fail_delay(),
                    respond: false,
                }
            }
            State::Complete => Verdict::Serve,
        }
    }

    fn handshake(&mut self, frame: &Bytes, key: Option<i16>, versions_seen: bool, out: &mut ResponseBuf) -> Verdict {
        let reauth = self.reauth_started.is_some();
        if key == Some(ApiKey::ApiVersions as i16) && !versions_seen && !reauth {
            // Served by the API layer; a version too new gets its error answer and may be retried.
            let too_new = frame
                .get(2..4)
                .map(|v| i16::from_be_bytes([v[0], v[1]]))
                .zip(api::versions::supported(ApiKey::ApiVersions))
                .is_some_and(|(v, range)| v > range.max);
            self.state = State::Handshake {
                versions_seen: !too_new,
            };
            return Verdict::Serve;
        }
        if key != Some(ApiKey::SaslHandshake as i16) {
            tracing::debug!(listener = %self.listener, ?key, "request before SASL authentication; closing");
            return Verdict::Close;
        }
        let Decoded::Request {
            version,
            header,
            body: RequestKind::SaslHandshake(req),
            ..
        } = api::decode_request(frame.clone())
        else {
            return Verdict::Close;
        };
        let enabled: Vec<StrBytes> = self
            .settings
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let requested = SaslMechanism::parse(req.mechanism.as_str()).filter(|m| self.settings.mechanisms.contains(m));
        let error = if requested.is_some() {
            0
        } else {
            ResponseError::UnsupportedSaslMechanism.code()
        };
        let response = SaslHandshakeResponse::default()
            .with_error_code(error)
            .with_mechanisms(enabled);
        if encode(
            ApiKey::SaslHandshake,
            version,
            header.correlation_id,
            ResponseKind::SaslHandshake(response),
            out,
        )
        .is_none()
        {
            return Verdict::Close;
        }
        let Some(mechanism) = requested else {
            tracing::debug!(listener = %self.listener, mechanism = %req.mechanism.as_str(), "unsupported SASL mechanism");
            self.failed(None);
            return Verdict::Fail {
                delay: self.fail_delay(),
                respond: true,
            };
        };
        if let Some(previous) = self.session.as_ref().map(|s| s.mechanism).filter(|p| *p != mechanism) {
            self.state = State::ReauthBadMechanism(format!(
                "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
                mechanism.name(),
                previous.name()
            ));
            return Verdict::Respond;
        }
        let exchange = match mechanism.scram() {
            None => Exchange::Plain,
            Some(m) => Exchange::Scram(Box::new(ScramServer::new(m))),
        };
        self.state = State::Authenticate {
            mechanism,
            framed: version >= 1,
            exchange,
        };
        Verdict::Respond
    }

    fn authenticate(
        &mut self,
        broker: &Broker,
        frame: &Bytes,
        mechanism: SaslMechanism,
        framed: bool,
        mut exchange: Exchange,
        out: &mut ResponseBuf,
    ) -> Verdict {
        // Framed: the token is inside a SaslAuthenticate request.
        let (token, framed_as) = if framed {
            match api::decode_request(frame.clone()) {
                Decoded::Request {
                    version,
                    header,
                    body: RequestKind::SaslAuthenticate(req),
                    ..
                } => {
                    self.reauth_capable |= version >= 1;
                    (req.auth_bytes, Some((version, header.correlation_id)))
                }
                _ => {
                    tracing::debug!(listener = %self.listener, "unexpected request during SASL authentication");
                    self.failed(Some(mechanism));
                    return Verdict::Fail {
                        delay: self.fail_delay(),
                        respond: false,
                    };
                }
            }
        } else {
            (frame.clone(), None)
        };
        let step = match &mut exchange {
            Exchange::Plain => plain::authenticate(&token, &self.settings.plain_users).map(|user| Step::Done {
                user,
                reply: Vec::new(),
            }),
            Exchange::Scram(server) => {
                let image = broker.metadata.image();
                let hash = mechanism.scram();
                let nonce = scram::random_token(24).unwrap_or_default();
                server.step(
                    &token,
                    |user| hash.and_then(|h| image.scram_credential(user, h)).cloned(),
                    &nonce,
                )
            }
        };
        let step = step.and_then(|s| match s {
            Step::Done { user, reply } => {
                let principal = Principal::user(&user);
                match &self.session {
                    Some(previous) if previous.principal != principal => Err(AuthError::Visible(format!(
                        "Cannot change principals during re-authentication from {}.{}: {}.{}",
                        previous.principal.kind, previous.principal.name, principal.kind, principal.name
                    ))),
                    _ => Ok((Some(principal), reply)),
                }
            }
            Step::Challenge(c) => Ok((None, c)),
        });
        match step {
            Ok((principal, reply)) => {
                let lifetime_ms = self.settings.reauth_ms(mechanism);
                if let Some(principal) = principal {
                    let reauth = self.reauth_started.is_some();
                    tracing::debug!(listener = %self.listener, mechanism = mechanism.name(), %principal, reauth, "authenticated");
                    crate::metrics::authentication(&self.listener, mechanism.name(), true, reauth);
                    self.session = Some(Session {
                        mechanism,
                        principal,
                        expires: (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms)),
                    });
                    self.state = State::Complete;
                } else {
                    self.state = State::Authenticate {
                        mechanism,
                        framed,
                        exchange,
                    };
                }
                let complete = !self.in_progress();
                match framed_as {
                    None => {
                        bytes::BufMut::put_slice(out, &reply);
                        Verdict::Respond
                    }
                    Some((version, correlation_id)) => {
                        let response = SaslAuthenticateResponse::default()
                            .with_auth_bytes(Bytes::from(reply))
                            .with_session_lifetime_ms(if complete { lifetime_ms as i64 } else { 0 });
                        match encode(
                            ApiKey::SaslAuthenticate,
                            version,
                            correlation_id,
                            ResponseKind::SaslAuthenticate(response),
                            out,
                        ) {
                            Some(()) => Verdict::Respond,
                            None => Verdict::Close,
                        }
                    }
                }
            }
            Err(e) => {
                let doing = if self.reauth_started.is_some() {
                    "re-authentication"
                } else {
                    "authentication"
                };
                tracing::debug!(listener = %self.listener, mechanism = mechanism.name(), reason = %e, "{doing} failed");
                self.failed(Some(mechanism));
                let message = match e {
                    AuthError::Visible(m) => m,
                    AuthError::Hidden(_) => format!(
                        "Authentication failed during {doing} due to invalid credentials with SASL mechanism {}",
                        mechanism.name()
                    ),
                };
                let respond = match framed_as {
                    None => false,
                    Some((version, correlation_id)) => {
                        let response = SaslAuthenticateResponse::default()
                            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_string(message)));
                        encode(
                            ApiKey::SaslAuthenticate,
                            version,
                            correlation_id,
                            ResponseKind::SaslAuthenticate(response),
                            out,
                        )
                        .is_some()
                    }
                };
                Verdict::Fail {
                    delay: self.fail_delay(),
                    respond,
                }
            }
        }
    }

    fn failed(&mut self, mechanism: Option<SaslMechanism>) {
        let name = mechanism.map_or("none", SaslMechanism::name);
        crate::metrics::authentication(&self.listener, name, false, self.reauth_started.is_some());
        self.state = State::Complete;
        self.session = None;
    }
}

fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: ResponseKind,
    out: &mut ResponseBuf,
) -> Option<()> {
    match api::encode_response(api_key, version, correlation_id, &response, out) {
        Outcome::Respond => Some(()),
        _ => None,
    }
}
