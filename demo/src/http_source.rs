//! A `WeightSource` over plain HTTP/1.1 (std::net, no TLS): the native counterpart of the
//! browser's fetch-with-Range source. A sequential load is one streamed GET (`Range: bytes=N-`
//! from the first offset read); a read elsewhere opens a new ranged GET at that offset.
//! Every number a server sends is only compared, never used to size an allocation.

use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use webjit_engine::loader::{LoaderError, WeightSource};

use crate::http::{read_head, Head};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;

/// An `http://host[:port]/path` URL, split for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// The request target: path and query, always starting with `/`.
    pub target: String,
}

impl HttpUrl {
    /// Parses an `http://` URL. Anything else (https included) is a one-line error message.
    pub fn parse(url: &str) -> Result<Self, String> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(format!(
                "{url}: only http:// URLs are supported natively (no TLS); download the file \
                 and pass its path, or serve it over http (`webjit serve --models DIR`)"
            ));
        }
        let rest = lower
            .starts_with("http://")
            .then(|| &url["http://".len()..])
            .ok_or_else(|| format!("{url}: not an http:// URL"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let target = target.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err(format!("{url}: user names in URLs are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without a port ends in `]`.
            Some((h, p)) if !p.contains(']') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {p:?}"))?;
                (h, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("{url}: no host or port"));
        }
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "{url}: spaces or control characters in the path (percent-encode them)"
            ));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The same server, another path: `Location` headers and files beside this one.
    fn resolve(&self, location: &str) -> Result<Self, String> {
        if location.contains("://") {
            return Self::parse(location);
        }
        let target = if location.starts_with('/') {
            location.to_string()
        } else {
            let dir = self.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            format!("{dir}/{location}")
        };
        Ok(Self {
            target,
            ..self.clone()
        })
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }

    /// The URL of `name` inside the directory this URL names (for model directories).
    pub fn join(&self, name: &str) -> Self {
        let base = self.path().trim_end_matches('/');
        Self {
            target: format!("{base}/{name}"),
            ..self.clone()
        }
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.target)
    }
}

/// A response whose head has been read; the body follows in `body`.
struct Response {
    status: u16,
    head: Head,
    body: BufReader<TcpStream>,
}

/// One request, following up to `MAX_REDIRECTS` redirects. `range` is an inclusive byte range,
/// open-ended when the end is `None`.
fn request(
    url: &HttpUrl,
    method: &str,
    range: Option<(u64, Option<u64>)>,
) -> Result<(HttpUrl, Response), String> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let resp = request_once(&url, method, range)?;
        if matches!(resp.status, 301 | 302 | 303 | 307 | 308) {
            let location = resp
                .head
                .header("location")
                .ok_or_else(|| format!("{url}: redirect {} without a Location", resp.status))?;
            url = url.resolve(location)?;
            continue;
        }
        return Ok((url, resp));
    }
    Err(format!("{url}: more than {MAX_REDIRECTS} redirects"))
}

fn request_once(
    url: &HttpUrl,
    method: &str,
    range: Option<(u64, Option<u64>)>,
) -> Result<Response, String> {
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {}: {e}", url.host))?;
    let mut last = format!("{url}: {} resolves to no address", url.host);
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{url}: cannot connect to {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    let range = match range {
        Some((a, Some(b))) => format!("Range: bytes={a}-{b}\r\n"),
        Some((a, None)) => format!("Range: bytes={a}-\r\n"),
        None => String::new(),
    };
    let req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: webjit/{}\r\nAccept: */*\r\n\
         Accept-Encoding: identity\r\n{range}Connection: close\r\n\r\n",
        url.target,
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut body = BufReader::with_capacity(256 << 10, stream);
    let head = read_head(&mut body)
        .map_err(io)?
        .ok_or_else(|| format!("{url}: the server closed the connection without answering"))?;
    let mut parts = head.start.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{url}: not an HTTP/1.x response: {:?}", head.start))?;
    Ok(Response { status, head, body })
}

/// Parses `Content-Range: bytes a-b/total` (total may be `*`).
fn content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let v = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = v.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

/// An open body positioned at `pos`, ending (exclusive) at `end`.
struct Body {
    reader: BufReader<TcpStream>,
    pos: u64,
    end: u64,
}

pub struct HttpSource {
    url: HttpUrl,
    len: Option<u64>,
    body: Option<Body>,
    /// The last length probe was answered 404 (optional files of a model directory).
    not_found: bool,
}

impl HttpSource {
    pub fn new(url: HttpUrl) -> Self {
        Self {
            url,
            len: None,
            body: None,
            not_found: false,
        }
    }

    fn err(&self, offset: u64, detail: String) -> LoaderError {
        LoaderError::Io { offset, detail }
    }

    /// Opens a body streaming from `offset` to the end of the file.
    fn open_at(&mut self, offset: u64) -> Result<Body, LoaderError> {
        let len = self.len()?;
        let (url, resp) =
            request(&self.url, "GET", Some((offset, None))).map_err(|d| self.err(offset, d))?;
        match resp.status {
            206 => {
                let cr = resp.head.header("content-range").and_then(content_range);
                match cr {
                    Some((a, b, total))
                        if a == offset && a <= b && b < len && total.is_none_or(|t| t == len) =>
                    {
                        Ok(Body {
                            reader: resp.body,
                            pos: offset,
                            end: b + 1,
                        })
                    }
                    _ => Err(self.err(
                        offset,
                        format!(
                            "{url}: asked for bytes {offset}- of {len}, got Content-Range {:?}",
                            resp.head.header("content-range")
                        ),
                    )),
                }
            }
            // A server that ignores Range sends the whole file: usable from the start only.
            200 if offset == 0 && resp.head.content_length() == Some(len) => Ok(Body {
                reader: resp.body,
                pos: 0,
                end: len,
            }),
            200 => Err(self.err(
                offset,
                format!("{url}: the server does not support Range requests"),
            )),
            s => Err(self.err(offset, format!("{url}: HTTP status {s}"))),
        }
    }
}

impl WeightSource for HttpSource {
    fn len(&mut self) -> Result<u64, LoaderError> {
        if let Some(n) = self.len {
            return Ok(n);
        }
        // The length comes from a one-byte ranged GET: its Content-Range carries the total,
        // and it proves Range support before the load starts.
        let (url, resp) =
            request(&self.url, "GET", Some((0, Some(0)))).map_err(|d| self.err(0, d))?;
        let len = match resp.status {
            206 => resp
                .head
                .header("content-range")
                .and_then(content_range)
                .and_then(|(_, _, total)| total),
            200 => resp.head.content_length(),
            416 => Some(0),
            404 => {
                self.not_found = true;
                return Err(self.err(0, format!("{url}: not found (HTTP 404)")));
            }
            s => return Err(self.err(0, format!("{url}: HTTP status {s}"))),
        }
        .ok_or_else(|| {
            self.err(
                0,
                format!("{url}: the server did not say how long the file is"),
            )
        })?;
        self.url = url;
        self.len = Some(len);
        Ok(len)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), LoaderError> {
        if buf.is_empty() {
            return Ok(());
        }
        let len = self.len()?;
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > len)
        {
            return Err(self.err(
                offset,
                format!("read of {} bytes past the end ({len} bytes)", buf.len()),
            ));
        }
        // A server may answer fewer bytes than asked (some cap range sizes), so the buffer
        // fills from as many responses as it takes. One retry per piece on a fresh
        // connection: a long download may see its connection dropped.
        let mut filled = 0usize;
        let mut retried = false;
        while filled < buf.len() {
            let at = offset + filled as u64;
            let mut body = match self.body.take() {
                Some(b) if b.pos == at && b.pos < b.end => b,
                _ => self.open_at(at)?,
            };
            // open_at guarantees pos < end, so every piece makes progress.
            let want = usize::try_from(body.end - body.pos)
                .unwrap_or(usize::MAX)
                .min(buf.len() - filled);
            match body.reader.read_exact(&mut buf[filled..filled + want]) {
                Ok(()) => {
                    filled += want;
                    body.pos += want as u64;
                    retried = false;
                    if body.pos < body.end {
                        self.body = Some(body);
                    }
                }
                Err(_) if !retried => retried = true,
                Err(e) => return Err(self.err(at, format!("{}: {e}", self.url))),
            }
        }
        Ok(())
    }
}

/// Reads a whole (small) file over HTTP: config and tokenizer JSON. `Ok(None)` on 404.
pub fn get_small(url: &HttpUrl, max: u64) -> Result<Option<Vec<u8>>, LoaderError> {
    let mut src = HttpSource::new(url.clone());
    let len = match src.len() {
        Ok(n) => n,
        Err(_) if src.not_found => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > max {
        return Err(LoaderError::TooLarge {
            field: format!("{url} length"),
            offset: 0,
            value: len,
            max,
        });
    }
    let mut buf = vec![0u8; len as usize];
    src.read_at(0, &mut buf)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_and_refuses_the_rest() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/models/a.gguf?x=1#frag").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.target, "/models/a.gguf?x=1");
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/models/a.gguf?x=1");
        let u = HttpUrl::parse("HTTP://example.org").unwrap();
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
        assert_eq!(u.join("config.json").target, "/config.json");
        let e = HttpUrl::parse("https://example.org/m.gguf").unwrap_err();
        assert!(e.contains("only http://"), "{e}");
        assert!(HttpUrl::parse("ftp://x/y").is_err());
        assert!(HttpUrl::parse("http://x:99999/").is_err());
        assert!(HttpUrl::parse("http://:80/").is_err());
        assert!(HttpUrl::parse("http://x/a b").is_err());
    }

    #[test]
    fn resolves_redirect_locations() {
        let u = HttpUrl::parse("http://h:1/a/b/c.gguf").unwrap();
        assert_eq!(u.resolve("d.gguf").unwrap().target, "/a/b/d.gguf");
        assert_eq!(u.resolve("/x").unwrap().target, "/x");
        assert_eq!(u.resolve("http://o/y").unwrap().host, "o");
    }

    /// A server on a free port answering each connection with `answer(request head)`.
    fn fake_server(answer: fn(&Head) -> Vec<u8>) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s.try_clone().unwrap());
                if let Ok(Some(head)) = read_head(&mut r) {
                    let _ = (&s).write_all(&answer(&head));
                }
            }
        });
        port
    }

    const BODY: &[u8] = b"0123456789abcdef";

    #[test]
    fn a_server_without_range_support_serves_from_the_start_only() {
        let port = fake_server(|_| {
            let mut r =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len()).into_bytes();
            r.extend_from_slice(BODY);
            r
        });
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/f")).unwrap();
        let mut src = HttpSource::new(url);
        assert_eq!(src.len().unwrap(), BODY.len() as u64);
        let mut buf = [0u8; 6];
        src.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, &BODY[..6]);
        // Sequential reads continue the same body.
        src.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, &BODY[6..12]);
        let e = src.read_at(1, &mut buf).unwrap_err().to_string();
        assert!(e.contains("Range"), "{e}");
        assert!(src.read_at(12, &mut [0u8; 5]).is_err(), "past the end");
    }

    #[test]
    fn follows_redirects_and_checks_content_range() {
        let port = fake_server(|h| {
            let target = h.start.split_whitespace().nth(1).unwrap_or("");
            let range = h.header("range").unwrap_or("");
            let a: usize = range
                .trim_start_matches("bytes=")
                .split('-')
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            match target {
                "/old" => b"HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n".to_vec(),
                // Answers a range other than the one asked for.
                "/liar" => format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/{}\r\nContent-Length: 1\r\n\r\n0",
                    BODY.len()
                )
                .into_bytes(),
                _ => {
                    let end = if range.ends_with("-0") { 0 } else { BODY.len() - 1 };
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{end}/{}\r\nContent-Length: {}\r\n\r\n",
                        BODY.len(),
                        end + 1 - a
                    )
                    .into_bytes();
                    r.extend_from_slice(&BODY[a..=end]);
                    r
                }
            }
        });
        let url = |p: &str| HttpUrl::parse(&format!("http://127.0.0.1:{port}{p}")).unwrap();
        let mut src = HttpSource::new(url("/old"));
        let mut buf = [0u8; 4];
        src.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, &BODY[10..14]);
        let mut liar = HttpSource::new(url("/liar"));
        let e = liar.read_at(3, &mut buf).unwrap_err().to_string();
        assert!(e.contains("Content-Range"), "{e}");
    }

    #[test]
    fn a_server_that_caps_range_sizes_is_read_in_pieces() {
        // Answers at most 5 bytes per request, whatever was asked.
        let port = fake_server(|h| {
            let a: usize = h
                .header("range")
                .and_then(|r| r.trim_start_matches("bytes=").split('-').next())
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let end = (a + 4).min(BODY.len() - 1);
            let mut r = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{end}/{}\r\n\
                 Content-Length: {}\r\n\r\n",
                BODY.len(),
                end + 1 - a
            )
            .into_bytes();
            r.extend_from_slice(&BODY[a..=end]);
            r
        });
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/f")).unwrap();
        let mut src = HttpSource::new(url);
        let mut all = [0u8; BODY.len()];
        src.read_at(0, &mut all).unwrap();
        assert_eq!(&all, BODY);
        let mut mid = [0u8; 7];
        src.read_at(3, &mut mid).unwrap();
        assert_eq!(&mid, &BODY[3..10]);
    }

    #[test]
    fn parses_content_range() {
        assert_eq!(content_range("bytes 0-0/123"), Some((0, 0, Some(123))));
        assert_eq!(content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(content_range("bytes */123"), None);
        assert_eq!(content_range("items 0-1/2"), None);
    }
}
