//! Request decoding: any bytes as one request frame (what follows the length prefix), through
//! the function the broker's request path calls. Kafka's answer to a bad frame is a closed
//! connection; a panic or an abort here is a crash of the broker.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice::api::decode_request(Bytes::copy_from_slice(data));
});
