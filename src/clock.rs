//! The wall clock in milliseconds since the Unix epoch, as Kafka's timestamps are: one
//! function for every layer (record timestamps, segment ages, follower states, DescribeQuorum).

/// Now, in ms since the epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
