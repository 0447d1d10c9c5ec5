//! `GET /api/movies` as a stream: a blocking thread reads the rows from a
//! server-side cursor in batches, renders them as the JSON array and hands
//! the bytes to the response body through a bounded channel. So memory stays
//! bounded whatever the row count, and a slow client slows the database read
//! down instead of piling bytes up in the service.
//!
//! The bytes are those of `serde_json::to_vec(&queries::list(..))`. Answers
//! that fit in the first chunk keep their Content-Length; longer ones are
//! chunked. An error after the first byte can no longer become a status
//! code, so the body ends with an error: actix then closes the connection
//! without the final chunk, and no client can take the cut answer for a
//! complete array.

use crate::error::Error;
use crate::models::{Movie, MovieFilter};
use crate::queries;
use crate::state::AppState;
use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use common::logging::one_line;
use common::request_id::RequestId;
use diesel::pg::PgConnection;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, error::TrySendError};

/// Chunks in flight between the reading thread and the socket.
const CHANNEL_CHUNKS: usize = 4;
/// An answer that fits in the first chunk is sent whole, with its length.
const FIRST_CHUNK_BYTES: usize = 256 * 1024;
const CHUNK_BYTES: usize = 64 * 1024;
/// Rows per FETCH are sized to about this much row data: large enough that
/// round trips cost little, small enough that 10,000-character descriptions
/// do not make a batch tens of megabytes.
const BATCH_TARGET_BYTES: usize = 128 * 1024;
const FIRST_BATCH_ROWS: u32 = 64;
const MIN_BATCH_ROWS: u32 = 16;
const MAX_BATCH_ROWS: u32 = 4096;

/// What the reading thread sends, in this order: `Start`, then `Data`
/// chunks, then `Last`; or `Failed` at any point.
pub enum Piece {
    /// Ready for the headers. For a full page, the id its next page starts after.
    Start {
        next_after: Option<i64>,
    },
    Data(Bytes),
    Last(Bytes),
    Failed(Error),
}

/// Starts reading the listing on a blocking thread. Call from the actix runtime.
/// `rid` is the request id its log lines carry, as the access log's do.
pub fn start(state: &AppState, filter: MovieFilter, rid: RequestId) -> mpsc::Receiver<Piece> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let out = Out {
        tx,
        runtime: Handle::current(),
        stall: state.listing_stall,
        rid,
    };
    let state = state.clone();
    // Not awaited: the thread ends by itself when the listing is done, the
    // client has gone (the receiver is dropped) or the client stalls.
    drop(actix_web::rt::task::spawn_blocking(move || {
        produce(&state, &filter, &out)
    }));
    rx
}

/// Why the reading thread stopped early.
enum Stop {
    Db(diesel::result::Error),
    Render(serde_json::Error),
    ClientGone,
    Stalled,
}

impl From<diesel::result::Error> for Stop {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

fn produce(state: &AppState, filter: &MovieFilter, out: &Out) {
    let mut conn = match state.connection() {
        Ok(conn) => conn,
        Err(e) => return out.fail(e),
    };
    // One snapshot for the page's "is it full" query and the cursor; read
    // only. On any early stop the transaction rolls back, which closes the
    // cursor at once, and the connection goes back to the pool.
    let result = conn
        .build_transaction()
        .read_only()
        .repeatable_read()
        .run(|conn| read(conn, filter, out));
    match result {
        Ok(()) => {}
        Err(Stop::Db(e)) => out.fail(e.into()),
        Err(Stop::Render(e)) => out.fail(Error::Internal(format!("rendering a movie: {e}").into())),
        Err(Stop::ClientGone) => {
            log::info!(
                "listing stopped: nobody reads it any more (the client went away, or a HEAD) event=listing_stopped reason=client_gone {}",
                out.rid
            )
        }
        Err(Stop::Stalled) => log::warn!(
            "listing stopped: the client read nothing for {:?}; its answer is cut event=listing_stopped reason=stalled {}",
            out.stall,
            out.rid
        ),
    }
}

fn read(conn: &mut PgConnection, filter: &MovieFilter, out: &Out) -> Result<(), Stop> {
    queries::open_listing(conn, filter)?;
    let mut buf = Vec::with_capacity(FIRST_CHUNK_BYTES + CHUNK_BYTES);
    let mut flush_at = FIRST_CHUNK_BYTES;
    buf.push(b'[');
    let mut rows_read: i64 = 0;
    let mut last_id = None;
    let mut started = false;
    let mut batch = FIRST_BATCH_ROWS;
    loop {
        let rows = queries::fetch_listing(conn, batch)?;
        let mut row_bytes = 0;
        for movie in &rows {
            if rows_read > 0 {
                buf.push(b',');
            }
            rows_read += 1;
            last_id = Some(movie.id);
            let before = buf.len();
            render(&mut buf, movie)?;
            row_bytes += buf.len() - before;
            if buf.len() >= flush_at {
                if !started {
                    // The headers go out before the page's end is known:
                    // ask the database whether the page will be full (only
                    // here, so small pages cost no second query).
                    let next_after = queries::last_id_of_full_page(conn, filter)?;
                    out.send(Piece::Start { next_after })?;
                    started = true;
                }
                let chunk = std::mem::replace(&mut buf, Vec::with_capacity(2 * CHUNK_BYTES));
                out.send(Piece::Data(chunk.into()))?;
                flush_at = CHUNK_BYTES;
            }
        }
        // Fewer rows than asked for: the cursor is at its end.
        if rows.len() < batch as usize {
            break;
        }
        batch = next_batch(row_bytes / rows.len());
    }
    buf.push(b']');
    if !started {
        let full = filter
            .limit
            .is_some_and(|limit| limit > 0 && rows_read == limit);
        let next_after = if full { last_id } else { None };
        out.send(Piece::Start { next_after })?;
    }
    out.send(Piece::Last(buf.into()))
}

fn render(buf: &mut Vec<u8>, movie: &Movie) -> Result<(), Stop> {
    serde_json::to_writer(buf, movie).map_err(Stop::Render)
}

fn next_batch(bytes_per_row: usize) -> u32 {
    let rows = BATCH_TARGET_BYTES / bytes_per_row.max(1);
    u32::try_from(rows)
        .unwrap_or(MAX_BATCH_ROWS)
        .clamp(MIN_BATCH_ROWS, MAX_BATCH_ROWS)
}

/// The reading thread's end of the channel.
struct Out {
    tx: mpsc::Sender<Piece>,
    runtime: Handle,
    stall: Duration,
    rid: RequestId,
}

impl Out {
    /// Waits while the channel is full (the client reads slower than the
    /// database), but not longer than `stall`: a client that stops reading
    /// must not keep a pooled connection forever.
    fn send(&self, piece: Piece) -> Result<(), Stop> {
        match self.tx.try_send(piece) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(Stop::ClientGone),
            Err(TrySendError::Full(piece)) => {
                // On a blocking thread: the worker's runtime drives the timer.
                let sent = self
                    .runtime
                    .block_on(tokio::time::timeout(self.stall, self.tx.send(piece)));
                match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(Stop::ClientGone),
                    Err(_) => Err(Stop::Stalled),
                }
            }
        }
    }

    fn fail(&self, error: Error) {
        if self.send(Piece::Failed(error)).is_err() {
            log::info!("listing failed after the client went away {}", self.rid);
        }
    }
}

/// The response body of a streamed listing.
pub struct ListingBody {
    pending: Option<Bytes>,
    rx: Option<mpsc::Receiver<Piece>>,
    sent: u64,
    rid: RequestId,
}

impl ListingBody {
    /// `first` is the chunk already received; the rest comes from `rx`.
    pub fn new(first: Bytes, rx: mpsc::Receiver<Piece>, rid: RequestId) -> Self {
        Self {
            pending: Some(first),
            rx: Some(rx),
            sent: 0,
            rid,
        }
    }

    /// A body with no bytes but the size of a stream (for HEAD).
    pub fn empty() -> Self {
        Self {
            pending: None,
            rx: None,
            sent: 0,
            rid: RequestId::fresh(),
        }
    }

    fn cut(&mut self, error: Error) -> Poll<Option<Result<Bytes, Error>>> {
        self.rx = None;
        log::error!(
            "listing cut after {} bytes (the client sees a truncated answer): {} event=listing_cut {}",
            self.sent,
            // libpq's messages span lines; one line keeps the request id on it.
            one_line(&error),
            self.rid
        );
        Poll::Ready(Some(Err(error)))
    }

    fn chunk(&mut self, bytes: Bytes) -> Poll<Option<Result<Bytes, Error>>> {
        self.sent += bytes.len() as u64;
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl MessageBody for ListingBody {
    type Error = Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.pending.take() {
            return this.chunk(bytes);
        }
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(bytes))) => this.chunk(bytes),
            Poll::Ready(Some(Piece::Last(bytes))) => {
                this.rx = None;
                this.chunk(bytes)
            }
            Poll::Ready(Some(Piece::Failed(e))) => this.cut(e),
            // The thread stopped without its last chunk (a stalled client).
            Poll::Ready(Some(Piece::Start { .. }) | None) => {
                this.cut(Error::Internal("the listing stopped before its end".into()))
            }
        }
    }
}
