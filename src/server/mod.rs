//! The network frontend: the accept loop ([`listener`]) and per-connection framing
//! ([`connection`]). Nothing here knows what a request means; frames go to
//! [`crate::api::handle_frame`].

pub mod connection;
pub mod listener;

pub use listener::serve;

#[cfg(test)]
pub(crate) mod tests;
