//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>), the part the
//! services need: one trace id for everything one client request causes. The
//! gateway accepts a client's `traceparent` or starts a trace; it passes the
//! context on to inventory (the `traceparent` HTTP header) and to the worker
//! (a `traceparent` header of the order message); every service writes
//! `trace_id=ID` beside `request_id=ID` on the log lines of that request or
//! order. So `journalctl | grep TRACE_ID` follows an order from the HTTP
//! request to its stored row. Nothing is exported (no spans are recorded):
//! the id in the logs is the whole feature.

use std::fmt;

/// The header's name, in HTTP and in the AMQP message's headers alike.
pub const TRACEPARENT: &str = "traceparent";

/// One hop's trace context: the trace it belongs to, this hop's span id (the
/// parent of whatever it calls), and the trace flags (sampled, ...), which we
/// pass on unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// A new trace: random trace and span ids, flags 01 (sampled), as a
    /// service that starts a trace records it.
    pub fn start() -> Self {
        let trace_id = nonzero(*uuid::Uuid::new_v4().as_bytes());
        Self {
            trace_id,
            span_id: new_span_id(),
            flags: 0x01,
        }
    }

    /// This hop's context for a request that arrived with `parent`: the same
    /// trace and flags, a span id of its own.
    pub fn child_of(parent: &Self) -> Self {
        Self {
            span_id: new_span_id(),
            ..*parent
        }
    }

    /// The context of an incoming request or message: a child of the sender's
    /// when its `traceparent` is valid, else a new trace (the specification's
    /// rule: an unparseable header is ignored, never an error).
    pub fn continue_from(header: Option<&[u8]>) -> Self {
        match header.and_then(parse) {
            Some(parent) => Self::child_of(&parent),
            None => Self::start(),
        }
    }

    /// The trace id as 32 lowercase hex digits, as logged.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The `traceparent` value that makes this hop the parent of the next.
    pub fn header_value(&self) -> String {
        std::str::from_utf8(&self.header_bytes())
            .unwrap_or_default()
            .to_owned()
    }

    /// [`header_value`](Self::header_value)'s 55 ASCII bytes, on the stack:
    /// what an HTTP header is made from, with no string between.
    pub fn header_bytes(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        hex_into(&self.trace_id, &mut out[3..35]);
        hex_into(&self.span_id, &mut out[36..52]);
        hex_into(&[self.flags], &mut out[53..55]);
        out
    }
}

/// Parses a `traceparent` value. Version 00 must be exactly
/// `00-<32 hex>-<16 hex>-<2 hex>`; a later version may append `-...` fields,
/// which are ignored; version ff, upper-case hex and all-zero ids are invalid
/// (the specification's rules).
pub fn parse(value: &[u8]) -> Option<TraceContext> {
    let value = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    if value.len() < 55 {
        return None;
    }
    let (head, rest) = value.split_at(55);
    let mut parts = head.split('-');
    let version = parts.next().filter(|v| v.len() == 2)?;
    let trace = parts.next().filter(|t| t.len() == 32)?;
    let span = parts.next().filter(|s| s.len() == 16)?;
    let flags = parts.next().filter(|f| f.len() == 2)?;
    let version = unhex::<1>(version)?[0];
    if version == 0xff
        || (version == 0 && !rest.is_empty())
        || (!rest.is_empty() && !rest.starts_with('-'))
    {
        return None;
    }
    let trace_id = unhex::<16>(trace)?;
    let span_id = unhex::<8>(span)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(TraceContext {
        trace_id,
        span_id,
        flags: unhex::<1>(flags)?[0],
    })
}

impl fmt::Display for TraceContext {
    /// The log token: `trace_id=<32 hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On the stack: every log line of a request writes it.
        let mut digits = [0; 32];
        hex_into(&self.trace_id, &mut digits);
        f.write_str("trace_id=")?;
        f.write_str(std::str::from_utf8(&digits).unwrap_or_default())
    }
}

fn new_span_id() -> [u8; 8] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut span = [0; 8];
    span.copy_from_slice(&bytes[8..]);
    nonzero(span)
}

/// All-zero ids are invalid; a random one is all zero with probability
/// 2^-64 at worst, but the rule costs one comparison.
fn nonzero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if id == [0; N] {
        id[N - 1] = 1;
    }
    id
}

/// Lowercase hex, two digits a byte. A table lookup into bytes, not `{:02x}`
/// per byte nor `String::push` per digit: this runs for every request's log
/// lines and `traceparent`, and the formatter's padding machinery and the
/// per-char UTF-8 encoding cost more than the rest of the id's work.
fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The hex digits of `bytes` into `out` (exactly twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

/// Lower-case hex only: the specification forbids upper case.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_is_read_and_continued() {
        let parent = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.header_value(), SAMPLE);
        let child = TraceContext::continue_from(Some(SAMPLE.as_bytes()));
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id, parent.span_id);
        assert_eq!(child.flags, 0x01);
        assert_eq!(
            child.to_string(),
            "trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn invalid_values_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
            let fresh = TraceContext::continue_from(Some(bad.as_bytes()));
            assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        assert!(parse(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn a_later_version_with_more_fields_is_read() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next";
        assert_eq!(
            parse(v.as_bytes()).unwrap().trace_id(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // ...but only after a dash.
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(parse(glued.as_bytes()), None);
    }

    #[test]
    fn new_traces_are_well_formed_and_distinct() {
        let a = TraceContext::start();
        let b = TraceContext::start();
        assert_ne!(a.trace_id(), b.trace_id());
        let header = a.header_value();
        assert_eq!(parse(header.as_bytes()), Some(a));
        assert!(header.starts_with("00-") && header.ends_with("-01"));
    }
}
