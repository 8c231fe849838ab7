//! The few pieces of HTTP/1.1 framing that `webjit serve` (requests) and the URL weight source
//! (responses) share: reading a bounded message head and looking up headers. No TLS, no
//! chunked bodies: both sides only exchange bodies whose length is known up front.

use std::io::{self, BufRead};

/// Longest message head (start line + headers) either side accepts. A peer that sends more is
/// broken or hostile; the limit bounds the memory one connection can take.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A parsed message head: the start line and the headers in order, names lower-cased.
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, if present and a number.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }
}

/// Reads one message head, up to and including the empty line. `Ok(None)` when the peer closed
/// the connection before sending a byte (the normal end of a keep-alive connection).
pub fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<Head>> {
    let mut lines: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        // `take` bounds each line by what is left of the head budget, so a peer cannot make
        // us buffer an endless line.
        let budget = (MAX_HEAD_BYTES - total) as u64;
        let n = io::Read::take(&mut *r, budget).read_until(b'\n', &mut line)?;
        if n == 0 {
            if lines.is_empty() && total == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a message head",
            ));
        }
        total += n;
        if !line.ends_with(b"\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message head longer than {MAX_HEAD_BYTES} bytes"),
            ));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            if lines.is_empty() {
                // Tolerate blank lines before a request line (RFC 9112 section 2.2).
                continue;
            }
            break;
        }
        let line = String::from_utf8(line)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "message head is not UTF-8"))?;
        lines.push(line);
    }
    let mut it = lines.into_iter();
    let start = it.next().unwrap_or_default();
    let mut headers = Vec::new();
    for line in it {
        let Some((name, value)) = line.split_once(':') else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed header line {line:?}"),
            ));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(Head { start, headers }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_and_stops_at_the_blank_line() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\nRange:  bytes=1-2 \r\n\r\nBODY";
        let mut r = io::BufReader::new(&raw[..]);
        let h = read_head(&mut r).unwrap().unwrap();
        assert_eq!(h.start, "GET /a HTTP/1.1");
        assert_eq!(h.header("range"), Some("bytes=1-2"));
        assert_eq!(h.header("host"), Some("x"));
        let mut rest = String::new();
        io::Read::read_to_string(&mut r, &mut rest).unwrap();
        assert_eq!(rest, "BODY");
    }

    #[test]
    fn rejects_an_endless_head() {
        let raw = vec![b'a'; MAX_HEAD_BYTES + 10];
        let mut r = io::BufReader::new(&raw[..]);
        assert!(read_head(&mut r).is_err());
        assert!(read_head(&mut io::BufReader::new(&b""[..]))
            .unwrap()
            .is_none());
    }
}
