//! The network frontend: the accept loop ([`listener`]), per-connection framing
//! ([`connection`]) and the broker-wide budget for request bytes ([`memory_pool`]). Nothing
//! here knows what a request means; frames go to [`crate::api::handle_frame`].

pub mod connection;
pub mod listener;
pub mod memory_pool;

pub use listener::serve;

#[cfg(test)]
pub(crate) mod tests;
