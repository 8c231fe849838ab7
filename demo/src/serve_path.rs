//! The pure parts of `webjit serve`: request paths to safe relative paths, Range headers to
//! byte ranges, file names to Content-Types. No I/O here, so each rule is unit-tested alone.

/// Why a request path cannot name a file.
#[derive(Debug, PartialEq, Eq)]
pub enum PathError {
    /// Malformed: bad percent-encoding, not UTF-8, NUL or backslash (400).
    Bad,
    /// Tries to leave the served directory: a `..` segment, raw or percent-encoded (403).
    Traversal,
    /// A hidden file (a segment starting with `.`): never served (404).
    Hidden,
}

/// A request target split into the path's decoded segments; `dir` when it ends with `/`.
#[derive(Debug, PartialEq, Eq)]
pub struct CleanPath {
    pub segments: Vec<String>,
    pub dir: bool,
}

impl CleanPath {
    /// The path as the client should see it (for redirects), re-encoding what needs it.
    pub fn encoded(&self) -> String {
        let mut s = String::from("/");
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            for b in seg.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
                    s.push(b as char);
                } else {
                    s.push_str(&format!("%{b:02X}"));
                }
            }
        }
        if self.dir && !self.segments.is_empty() {
            s.push('/');
        }
        s
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes `%XX` escapes; `None` on a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn is_file_name(s: &str) -> bool {
    use std::path::{Component, Path};
    let mut c = Path::new(s).components();
    matches!((c.next(), c.next()), (Some(Component::Normal(_)), None))
}

/// Cleans a request target (origin form `/a/b?q`, or absolute form `http://h/a/b`). Segments
/// are checked after percent-decoding each one, so `%2e%2e` and `..%2f..` are caught too.
pub fn clean_path(target: &str) -> Result<CleanPath, PathError> {
    let target = match target.find("://") {
        Some(i) => {
            let rest = &target[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => target,
    };
    if !target.starts_with('/') {
        return Err(PathError::Bad);
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let dir = path.ends_with('/');
    let mut segments = Vec::new();
    for raw in path.split('/') {
        let bytes = percent_decode(raw).ok_or(PathError::Bad)?;
        let seg = String::from_utf8(bytes).map_err(|_| PathError::Bad)?;
        // A decoded slash would let one segment climb several levels once joined.
        if seg.contains(['\0', '\\']) {
            return Err(PathError::Bad);
        }
        if seg.split('/').any(|part| part == "..") {
            return Err(PathError::Traversal);
        }
        if seg.contains('/') {
            return Err(PathError::Bad);
        }
        match seg.as_str() {
            "" | "." => continue,
            s if s.starts_with('.') => return Err(PathError::Hidden),
            // Anything the platform reads as more than a file name (a Windows drive `C:`)
            // would replace the served directory when joined.
            s if !is_file_name(s) => return Err(PathError::Bad),
            _ => segments.push(seg),
        }
    }
    Ok(CleanPath { segments, dir })
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReq {
    /// No Range, or one this server ignores (other units, several ranges, bad syntax): 200.
    Full,
    /// Inclusive byte range: 206.
    Partial(u64, u64),
    /// A valid range outside the file: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n`. RFC 9110 lets a server ignore Range,
/// so anything else is served whole.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeReq {
    let Some(h) = header else {
        return RangeReq::Full;
    };
    let h = h.trim();
    let Some(spec) = h
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes="))
        .map(|_| h[6..].trim())
    else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeReq::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::Partial(len - n.min(len), len - 1)
            }
        }
        (false, Some(a), None) if b.trim().is_empty() => {
            if a >= len {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::Partial(a, len - 1)
            }
        }
        (false, Some(a), Some(b)) if a <= b => {
            if a >= len {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::Partial(a, b.min(len - 1))
            }
        }
        _ => RangeReq::Full,
    }
}

/// The Content-Type of a file, by extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" | "md" | "ts" => "text/plain; charset=utf-8",
        // Model weights and anything unknown: bytes, never sniffed as something runnable.
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        clean_path(p).unwrap().segments
    }

    #[test]
    fn cleans_paths_and_refuses_traversal() {
        assert_eq!(segs("/pkg/a.js?x=1"), ["pkg", "a.js"]);
        assert_eq!(segs("/a%20b/./c"), ["a b", "c"]);
        assert_eq!(segs("http://h:1/x/y"), ["x", "y"]);
        assert!(clean_path("/dir/").unwrap().dir);
        for t in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/..%2f..%2fx",
            "/a/%2e%2e",
        ] {
            assert_eq!(clean_path(t), Err(PathError::Traversal), "{t}");
        }
        for t in ["/a%2fb", "/a%5cb", "/a%00", "/%zz", "/%e9", "x"] {
            assert_eq!(clean_path(t), Err(PathError::Bad), "{t}");
        }
        assert_eq!(clean_path("/.git/config"), Err(PathError::Hidden));
        assert_eq!(clean_path("/a%20b/c/").unwrap().encoded(), "/a%20b/c/");
    }

    #[test]
    fn parses_single_byte_ranges() {
        use RangeReq::*;
        let n = 100;
        assert_eq!(parse_range(None, n), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), n), Partial(0, 9));
        assert_eq!(parse_range(Some("bytes=90-200"), n), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=95-"), n), Partial(95, 99));
        assert_eq!(parse_range(Some("bytes=-10"), n), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), n), Partial(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), n), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=100-120"), n), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), n), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(parse_range(Some(ignored), n), Full, "{ignored}");
        }
    }

    /// Random paths built from the characters traversal tricks use, and random Range headers:
    /// no cleaned path may hold a segment that climbs or splits, and no range may leave the
    /// file. Seeded, so a failure reproduces.
    #[test]
    fn random_inputs_never_escape_or_overrun() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let path_chars = [
            '.', '/', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', '0', 'a', '\\',
        ];
        for _ in 0..20_000 {
            let len = next(24);
            let p: String = std::iter::once('/')
                .chain((0..len).map(|_| path_chars[next(path_chars.len())]))
                .collect();
            if let Ok(c) = clean_path(&p) {
                for seg in &c.segments {
                    assert!(
                        seg != ".." && seg != "." && !seg.contains(['/', '\\', '\0']),
                        "{p:?} -> {seg:?}"
                    );
                }
            }
        }
        let range_chars = ['0', '1', '7', '9', '-', ',', ' '];
        for _ in 0..20_000 {
            let file_len = next(1000) as u64;
            let n = next(12);
            let h: String = "bytes="
                .chars()
                .chain((0..n).map(|_| range_chars[next(range_chars.len())]))
                .collect();
            if let RangeReq::Partial(a, b) = parse_range(Some(&h), file_len) {
                assert!(
                    a <= b && b < file_len,
                    "{h:?} on {file_len} bytes -> {a}-{b}"
                );
            }
        }
    }

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type("a.WASM"), "application/wasm");
        assert!(content_type("x.mjs").starts_with("text/javascript"));
        assert_eq!(content_type("m.gguf"), "application/octet-stream");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
