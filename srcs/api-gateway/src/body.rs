//! Reading a request body into memory with a size limit, so an oversized
//! body is refused with 413 JSON before it is buffered (or forwarded).

use actix_web::http::header::{HeaderMap, CONTENT_LENGTH};
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;

use crate::error::Error;

/// Reads the whole body, refusing it as soon as it exceeds `limit` bytes
/// (at once when `Content-Length` already says so).
pub async fn read_limited(
    mut payload: web::Payload,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, Error> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    // Sized from the start when the length is announced: growing by
    // doubling leaves each smaller buffer behind as allocator garbage, which
    // with hundreds of slow uploads is most of the memory they cost.
    let mut body = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(Error::BadBody)?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
