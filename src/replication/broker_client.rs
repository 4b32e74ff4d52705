//! A Kafka-protocol connection from this broker to another (a follower's fetches, and later
//! the coordinators' marker writes): Kafka's framing, one request at a time, every exchange
//! bounded by a timeout and responses capped in size.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response accepted (a fetch is bounded by its max_bytes, far below this).
const MAX_RESPONSE: usize = 256 << 20;

/// One connection to a broker.
#[derive(Debug)]
pub struct BrokerClient {
    stream: TcpStream,
    correlation: i32,
    client_id: &'static str,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl BrokerClient {
    pub async fn connect(addr: &str, client_id: &'static str, timeout: Duration) -> io::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr}")))??;
        stream.set_nodelay(true)?;
        Ok(BrokerClient {
            stream,
            correlation: 0,
            client_id,
        })
    }

    /// Sends `request` at `version` and returns its response (or an error after `timeout`; the
    /// connection is then unusable).
    pub async fn send<R: Request>(&mut self, request: &R, version: i16, timeout: Duration) -> io::Result<R::Response> {
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str(self.client_id)));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version)).map_err(invalid)?;
        request.encode(&mut buf, version).map_err(invalid)?;
        let len = i32::try_from(buf.len() - 4).map_err(invalid)?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let exchange = async {
            self.stream.write_all(&buf).await?;
            let size = self.stream.read_i32().await?;
            let size = usize::try_from(size).map_err(invalid)?;
            if size > MAX_RESPONSE {
                return Err(invalid(format!("response of {size} bytes")));
            }
            let mut body = vec![0u8; size];
            self.stream.read_exact(&mut body).await?;
            Ok::<_, io::Error>(Bytes::from(body))
        };
        let mut body = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "broker request timed out"))??;
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(invalid)?;
        if header.correlation_id != correlation {
            return Err(invalid(format!(
                "correlation id {} for request {correlation}",
                header.correlation_id
            )));
        }
        let response = R::Response::decode(&mut body, version).map_err(invalid)?;
        if body.has_remaining() {
            tracing::debug!(left = body.remaining(), "response had trailing bytes");
        }
        Ok(response)
    }
}
