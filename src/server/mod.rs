//! The network frontend: an accept loop per listener ([`listener`]), TLS for SSL listeners
//! ([`tls`]), SASL authentication for SASL listeners ([`sasl`]), per-connection framing
//! ([`connection`]) and the broker-wide budget for request bytes ([`memory_pool`]). Nothing
//! here knows what a request means; frames go to [`crate::api::handle_frame`].

pub mod connection;
pub mod listener;
pub mod memory_pool;
pub mod sasl;
pub mod tls;

pub use listener::serve;

#[cfg(test)]
mod sasl_tests;
#[cfg(test)]
mod test_broker;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tls_tests;
