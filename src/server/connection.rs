//! One client connection: 4-byte length-prefixed frames in, responses out in request order.
//!
//! A reader task reads ahead up to `queued.max.requests` frames (so the client's pipelined
//! requests keep arriving while one is processed); the processing loop handles them strictly
//! one at a time, in order, as Kafka does by muting a channel until its response is sent. That
//! order matters: an idempotent producer's in-flight batches must be appended in the order sent.
//!
//! The frame length is checked (negative, or above `socket.request.max.bytes`) before any
//! allocation; Kafka closes the connection in both cases, and so do we. Read-ahead is bounded
//! by count (`queued.max.requests`) and by bytes, twice: a frame's size is taken from a
//! per-connection budget of `socket.request.max.bytes` and from the broker-wide
//! [`MemoryPool`] (`queued.max.request.bytes`) before its body is read, and given back once
//! its request is handled. So a connection holds at most one maximum-size request's worth of
//! unprocessed frames, and all connections together at most the pool. The body's memory is
//! allocated as its bytes arrive, never from the length prefix alone: a peer that sends a
//! length and stalls pins a reservation, not memory. Idle connections close after
//! `connections.max.idle.ms`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::api::response_buf::ResponseBuf;
use crate::api::{self, Outcome};
use crate::broker::Broker;
use crate::config::SaslSettings;
use crate::security::Principal;
use crate::server::memory_pool::{MemoryPool, Reservation};
use crate::server::sasl::{Authenticator, Verdict};

/// The response buffer capacity a connection keeps between requests.
const RETAINED_BUFFER_BYTES: usize = 4 << 20;
/// The first allocation for a frame body; it doubles (up to the frame's size) as bytes arrive.
const FIRST_CHUNK_BYTES: usize = 64 * 1024;

/// What a frame holds until its request is handled: its share of the per-connection and the
/// broker-wide budgets.
struct FrameBudget {
    _connection: OwnedSemaphorePermit,
    _pool: Reservation,
}

type QueuedFrame = (Bytes, FrameBudget, Instant);

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("frame size {size} outside [0, {max}]")]
    FrameSize { size: i64, max: usize },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("closed after an invalid request")]
    InvalidRequest,
    #[error("SASL authentication failed")]
    AuthenticationFailed,
}

/// Facts about the peer, for request context and logs.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The listener the connection came in on (Metadata answers with its endpoints).
    pub listener: Arc<str>,
    /// Its SASL settings, if it is a SASL listener: requests wait for authentication.
    pub sasl: Option<Arc<SaslSettings>>,
}

/// Serves a plaintext connection (the socket's own halves: no lock between reader and writer).
pub async fn run(
    socket: TcpStream,
    info: ConnectionInfo,
    broker: Arc<Broker>,
    pool: MemoryPool,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    socket.set_nodelay(true)?;
    let (read_half, write_half) = socket.into_split();
    serve(read_half, write_half, info, broker, pool, shutdown).await
}

/// Serves a connection whose TLS handshake is done.
pub async fn run_tls(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnectionInfo,
    broker: Arc<Broker>,
    pool: MemoryPool,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let (read_half, write_half) = tokio::io::split(stream);
    serve(read_half, write_half, info, broker, pool, shutdown).await
}

async fn serve<R, W>(
    read_half: R,
    write_half: W,
    info: ConnectionInfo,
    broker: Arc<Broker>,
    pool: MemoryPool,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<QueuedFrame>(broker.config.queued_max_requests);
    let max = broker.config.socket_request_max_bytes;
    let mut auth = info
        .sasl
        .clone()
        .map(|s| Authenticator::new(s, Arc::clone(&info.listener)));
    let anonymous = Principal::anonymous();
    // Before authentication, frames are held to sasl.server.max.receive.size.
    let frame_limit = Arc::new(AtomicUsize::new(auth.as_ref().map_or(max, |a| a.max_frame(max))));
    let limits = ReadLimits {
        max,
        limit: Arc::clone(&frame_limit),
        idle: Duration::from_millis(broker.config.connections_max_idle_ms),
        pool,
    };
    let reader = tokio::spawn(read_frames(read_half, tx, limits, shutdown));

    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let mut result = Ok(());
    // One response buffer per connection, reused: big fetch responses are not built in fresh
    // memory each time. Its capacity is kept only up to a bound.
    let mut out = ResponseBuf::new();
    while let Some((frame, budget, received)) = rx.recv().await {
        if let Some(a) = auth.as_mut() {
            match a.on_frame(&broker, &frame, &mut out) {
                Verdict::Serve => {}
                Verdict::Respond => {
                    frame_limit.store(a.max_frame(max), Ordering::Relaxed);
                    write_frame(&mut writer, &out).await?;
                    writer.flush().await?;
                    continue;
                }
                Verdict::Fail { delay, respond } => {
                    // Kafka delays a failed client's answer and close, to slow down guessing.
                    writer.flush().await.ok();
                    tokio::time::sleep(delay).await;
                    if respond {
                        write_frame(&mut writer, &out).await.ok();
                    }
                    result = Err(ConnectionError::AuthenticationFailed);
                    break;
                }
                Verdict::Close => {
                    result = Err(ConnectionError::InvalidRequest);
                    break;
                }
            }
        }
        let principal = auth.as_ref().map_or(&anonymous, |a| a.principal());
        // Responses of pipelined requests are batched into one write, but never held while a
        // request waits (acks=all for the ISR, a long-poll fetch): then what is buffered goes out.
        let outcome = {
            let handling = api::handle_frame(&broker, frame, &info, principal, &mut out, received);
            tokio::pin!(handling);
            tokio::select! {
                biased;
                outcome = &mut handling => outcome,
                flushed = writer.flush(), if !writer.buffer().is_empty() => {
                    flushed?;
                    handling.await
                }
            }
        };
        drop(budget);
        match outcome {
            Outcome::Respond => write_frame(&mut writer, &out).await?,
            Outcome::NoResponse => {}
            Outcome::Close => {
                result = Err(ConnectionError::InvalidRequest);
                break;
            }
        }
        if out.capacity() > RETAINED_BUFFER_BYTES {
            out = ResponseBuf::new();
        }
        // Flush when caught up (or, above, when the next request has to wait).
        if rx.is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await.ok();
    reader.abort();
    match reader.await {
        Ok(Err(e)) if result.is_ok() => Err(e),
        _ => result,
    }
}

/// Writes one length-prefixed response frame (not flushed).
async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut BufWriter<W>, out: &ResponseBuf) -> std::io::Result<()> {
    let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
    writer.write_all(&len.to_be_bytes()).await?;
    for piece in out.pieces() {
        writer.write_all(piece).await?;
    }
    Ok(())
}

struct ReadLimits {
    /// The connection's budget for unprocessed frames (`socket.request.max.bytes`).
    max: usize,
    /// The largest frame accepted now (smaller until SASL authentication completes).
    limit: Arc<AtomicUsize>,
    idle: Duration,
    pool: MemoryPool,
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut read_half: R,
    tx: mpsc::Sender<QueuedFrame>,
    limits: ReadLimits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let ReadLimits { max, limit, idle, pool } = limits;
    let budget = Arc::new(Semaphore::new(max));
    loop {
        let mut len_buf = [0u8; 4];
        let read = tokio::select! {
            r = tokio::time::timeout(idle, read_half.read_exact(&mut len_buf)) => r,
            _ = shutdown.changed() => return Ok(()),
        };
        match read {
            Err(_) => return Ok(()), // idle
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(_)) => {}
        }
        let size = i32::from_be_bytes(len_buf);
        let max_now = limit.load(Ordering::Relaxed).min(max);
        let len = usize::try_from(size).map_err(|_| ConnectionError::FrameSize {
            size: size.into(),
            max: max_now,
        })?;
        if len > max_now {
            return Err(ConnectionError::FrameSize {
                size: size.into(),
                max: max_now,
            });
        }
        // Wait until the frames already queued leave room for this one (len <= max, so it fits),
        // then until the broker-wide pool does.
        let permits = u32::try_from(len).unwrap_or(u32::MAX);
        let reserved = tokio::select! {
            r = async {
                let connection = budget.clone().acquire_many_owned(permits).await.ok()?;
                let pool = pool.reserve(len).await?;
                Some(FrameBudget { _connection: connection, _pool: pool })
            } => r,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(reserved) = reserved else {
            return Ok(());
        };
        let Some(frame) = read_body(&mut read_half, len, idle).await? else {
            return Ok(());
        };
        if tx.send((frame, reserved, Instant::now())).await.is_err() {
            return Ok(());
        }
    }
}

/// Reads a `len`-byte frame body, allocating as bytes arrive (a first chunk, then doubling,
/// never beyond `len`). `None` if the peer went quiet for `idle` (a header and a stall is
/// bounded by the idle timeout too).
async fn read_body<R: AsyncRead + Unpin>(
    read_half: &mut R,
    len: usize,
    idle: Duration,
) -> Result<Option<Bytes>, ConnectionError> {
    let mut frame: Vec<u8> = Vec::with_capacity(len.min(FIRST_CHUNK_BYTES));
    while frame.len() < len {
        if frame.len() == frame.capacity() {
            let grow = frame.len().max(FIRST_CHUNK_BYTES).min(len - frame.len());
            frame.reserve_exact(grow);
        }
        let remaining = (len - frame.len()) as u64;
        let n = match tokio::time::timeout(idle, (&mut *read_half).take(remaining).read_buf(&mut frame)).await {
            Err(_) => return Ok(None),
            Ok(r) => r?,
        };
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Some(Bytes::from(frame)))
}
