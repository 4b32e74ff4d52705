//! Every metric the broker records, declared once here. Call sites use these functions, never
//! metric name strings, so the names exported and the names the dashboard uses stay in one file.
//!
//! Recording goes through the `metrics` facade: with no exporter installed it costs a few
//! atomic loads.

use std::time::Duration;

pub const CONNECTIONS_ACTIVE: &str = "sluice_connections_active";
pub const CONNECTIONS_TOTAL: &str = "sluice_connections_total";
pub const REQUESTS_TOTAL: &str = "sluice_requests_total";
pub const REQUEST_ERRORS_TOTAL: &str = "sluice_request_errors_total";
pub const FSYNC_SECONDS: &str = "sluice_log_flush_seconds";
pub const MESSAGES_IN_TOTAL: &str = "sluice_messages_in_total";
pub const BYTES_IN_TOTAL: &str = "sluice_bytes_in_total";
pub const BYTES_OUT_TOTAL: &str = "sluice_bytes_out_total";

pub fn connection_opened() {
    metrics::gauge!(CONNECTIONS_ACTIVE).increment(1.0);
    metrics::counter!(CONNECTIONS_TOTAL).increment(1);
}

pub fn connection_closed() {
    metrics::gauge!(CONNECTIONS_ACTIVE).decrement(1.0);
}

pub fn request(api: &'static str) {
    metrics::counter!(REQUESTS_TOTAL, "api" => api).increment(1);
}

pub fn request_error(api: &'static str, code: i16) {
    metrics::counter!(REQUEST_ERRORS_TOTAL, "api" => api, "error" => code.to_string()).increment(1);
}

pub fn record_fsync(elapsed: Duration) {
    metrics::histogram!(FSYNC_SECONDS).record(elapsed.as_secs_f64());
}

pub fn produced(messages: u64, bytes: u64) {
    metrics::counter!(MESSAGES_IN_TOTAL).increment(messages);
    metrics::counter!(BYTES_IN_TOTAL).increment(bytes);
}

pub fn fetched(bytes: u64) {
    metrics::counter!(BYTES_OUT_TOTAL).increment(bytes);
}
