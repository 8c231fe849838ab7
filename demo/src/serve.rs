//! `webjit serve`: a small static HTTP/1.1 file server (std::net, a thread per connection) for
//! the browser demo and the browser tests. It serves the demo page at `/`, the wasm package at
//! `/pkg/` and the model cache at `/models/`, with the headers the page needs: exact
//! Content-Types (`application/wasm` for streaming compilation), single byte ranges (the
//! loader fetches models in ranges), and COOP/COEP so the page is cross-origin isolated.
//! Files are streamed from disk; a 250 MB model is never held in memory.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use webjit_engine::{Error, Result};

use crate::http::{read_head, Head};
use crate::serve_path::{clean_path, content_type, parse_range, CleanPath, PathError, RangeReq};

/// Connections served at once; past this a client gets 503 rather than a new thread.
const MAX_CONNECTIONS: usize = 256;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (the default keeps the server on this machine).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the URL printed on start has it).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A directory to serve, as `DIR` (at `/`) or `PREFIX=DIR` (at `/PREFIX/`); repeatable.
    /// Replaces the default for that prefix (`/` = demo/web, `/pkg/` = web/pkg).
    #[arg(long = "root", value_name = "[PREFIX=]DIR")]
    roots: Vec<String>,
    /// The directory served at `/models/` [default: ${WEBJIT_CACHE:-~/.cache/webjit}/models].
    #[arg(long)]
    models: Option<PathBuf>,
    /// Do not log requests to stderr.
    #[arg(long)]
    quiet: bool,
}

/// A directory served under a URL prefix (`/`, `/pkg/`, `/models/`).
#[derive(Debug)]
struct Mount {
    /// Segments of the prefix (`[]` for `/`, `["pkg"]` for `/pkg/`).
    prefix: Vec<String>,
    dir: PathBuf,
}

/// The checkout the binary runs from: the current directory when it holds demo/web, else the
/// source tree the binary was built from.
fn repo_dir() -> PathBuf {
    if Path::new("demo/web").is_dir() {
        return PathBuf::from(".");
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn prefix_segments(prefix: &str) -> Result<Vec<String>> {
    let p = clean_path(&format!("/{}", prefix.trim_start_matches('/'))).map_err(|_| {
        Error::InvalidArgument {
            op: "serve",
            detail: format!("--root prefix {prefix:?} is not a plain URL path"),
        }
    })?;
    Ok(p.segments)
}

fn mounts(args: &ServeArgs) -> Result<Vec<Mount>> {
    let repo = repo_dir();
    let mut mounts = vec![
        Mount {
            prefix: vec![],
            dir: repo.join("demo").join("web"),
        },
        Mount {
            prefix: vec!["pkg".into()],
            dir: repo.join("web").join("pkg"),
        },
        Mount {
            prefix: vec!["models".into()],
            dir: args
                .models
                .clone()
                .unwrap_or_else(crate::model_ref::model_cache),
        },
    ];
    for r in &args.roots {
        let (prefix, dir) = match r.split_once('=') {
            Some((p, d)) => (prefix_segments(p)?, PathBuf::from(d)),
            None => (vec![], PathBuf::from(r)),
        };
        if !dir.is_dir() {
            return Err(Error::InvalidArgument {
                op: "serve",
                detail: format!("--root {r}: {} is not a directory", dir.display()),
            });
        }
        mounts.retain(|m| m.prefix != prefix);
        mounts.push(Mount { prefix, dir });
    }
    // Longest prefix first, so `/pkg/x` goes to web/pkg and not to demo/web/pkg.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
    Ok(mounts)
}

pub fn run(args: ServeArgs) -> Result<()> {
    let mounts = Arc::new(mounts(&args)?);
    let listener =
        TcpListener::bind((args.host.as_str(), args.port)).map_err(|e| Error::InvalidArgument {
            op: "serve",
            detail: format!("cannot listen on {}:{}: {e}", args.host, args.port),
        })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(args.port);
    let host = if args.host.contains(':') {
        format!("[{}]", args.host)
    } else {
        args.host.clone()
    };
    for m in mounts.iter().rev() {
        let missing = if m.dir.is_dir() { "" } else { " (missing)" };
        let prefix = CleanPath {
            segments: m.prefix.clone(),
            dir: true,
        };
        eprintln!("  {:<10} {}{missing}", prefix.encoded(), m.dir.display());
    }
    // The URL line is what scripts and tests wait for: print it last and flush it.
    println!("webjit serve: http://{host}:{port}/");
    let _ = io::stdout().flush();
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::SeqCst);
            let mut s = stream;
            let _ = error_response(&mut s, 503, "too many connections", false, false);
            continue;
        }
        let (mounts, live2, quiet) = (Arc::clone(&mounts), Arc::clone(&live), args.quiet);
        let spawned = std::thread::Builder::new()
            .name("webjit-serve".into())
            .spawn(move || {
                // Errors on one connection (a client gone mid-file) concern that client only.
                let _ = connection(stream, &mounts, quiet);
                live2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// Serves requests on one connection until the client closes it or asks to.
fn connection(stream: TcpStream, mounts: &[Mount], quiet: bool) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let head = match read_head(&mut reader) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return error_response(&mut out, 400, "malformed request", false, false);
            }
            Err(e) => return Err(e),
        };
        let (status, keep) = respond(&head, &mut out, mounts)?;
        if !quiet {
            eprintln!("{peer} {:?} {status}", head.start);
        }
        if !keep {
            return Ok(());
        }
    }
}

/// Answers one request; returns the status and whether the connection stays open.
fn respond(head: &Head, out: &mut TcpStream, mounts: &[Mount]) -> io::Result<(u16, bool)> {
    let mut parts = head.start.split_whitespace();
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m, t, v),
        _ => {
            error_response(out, 400, "malformed request line", false, false)?;
            return Ok((400, false));
        }
    };
    let conn = head.header("connection").unwrap_or("").to_ascii_lowercase();
    // A body we would have to skip: answer, then close instead of parsing it.
    let has_body =
        head.content_length().unwrap_or(0) > 0 || head.header("transfer-encoding").is_some();
    let keep = !has_body
        && if version == "HTTP/1.0" {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            error_response(out, 405, "only GET and HEAD are supported", false, false)?;
            return Ok((405, false));
        }
    };
    let path = match clean_path(target) {
        Ok(p) => p,
        Err(PathError::Bad) => return status(out, 400, "bad request path", head_only, keep),
        Err(PathError::Traversal) => return status(out, 403, OUTSIDE, head_only, keep),
        Err(PathError::Hidden) => return status(out, 404, "not found", head_only, keep),
    };
    let Some(mount) = mounts.iter().find(|m| path.segments.starts_with(&m.prefix)) else {
        return status(out, 404, "not found", head_only, keep);
    };
    let mut requested = mount.dir.clone();
    for seg in &path.segments[mount.prefix.len()..] {
        requested.push(seg);
    }
    let mut file_path = match resolve_inside(&mount.dir, &requested) {
        Ok(p) => p,
        Err(Resolve::Missing) => return status(out, 404, "not found", head_only, keep),
        Err(Resolve::Outside) => return status(out, 403, OUTSIDE, head_only, keep),
    };
    let meta = match std::fs::metadata(&file_path) {
        Ok(m) => m,
        Err(_) => return status(out, 404, "not found", head_only, keep),
    };
    if meta.is_dir() {
        if !path.dir {
            // `/pkg` -> `/pkg/`, so relative links in its index.html resolve inside it.
            let to = CleanPath {
                segments: path.segments.clone(),
                dir: true,
            }
            .encoded();
            let extra = format!("Location: {to}\r\n");
            send_head(out, 301, "text/plain; charset=utf-8", 0, &extra, keep)?;
            return Ok((301, keep));
        }
        // `index.html` itself may be a link out of the served directory.
        requested.push("index.html");
        file_path = match resolve_inside(&mount.dir, &requested) {
            Ok(p) => p,
            Err(Resolve::Missing) => return status(out, 404, "not found", head_only, keep),
            Err(Resolve::Outside) => return status(out, 403, OUTSIDE, head_only, keep),
        };
    }
    // The requested name gives the Content-Type (a cache's blob has no extension).
    let name = requested.to_string_lossy().into_owned();
    let file = match File::open(&file_path) {
        Ok(f) => f,
        Err(_) => return status(out, 404, "not found", head_only, keep),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return status(out, 404, "not found", head_only, keep);
    }
    let etag = etag(&meta);
    let req = FileRequest {
        head,
        head_only,
        keep,
    };
    send_file(out, file, meta.len(), &name, &etag, &req)
}

const OUTSIDE: &str = "paths may not leave the served directory";

enum Resolve {
    Missing,
    Outside,
}

/// The real path of `path` (every symlink followed), served only when it lies inside the real
/// path of the mount's directory: links that stay inside (a model cache's blobs) keep working,
/// links to `/etc` do not. The caller opens the resolved path (no links left in it), which
/// leaves only a link planted inside the served tree between the check and the open.
fn resolve_inside(root: &Path, path: &Path) -> std::result::Result<PathBuf, Resolve> {
    let root = std::fs::canonicalize(root).map_err(|_| Resolve::Missing)?;
    let real = std::fs::canonicalize(path).map_err(|_| Resolve::Missing)?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(Resolve::Outside)
    }
}

/// A validator from the file's length and modification time, so a reload revalidates with
/// `If-None-Match` (304) instead of downloading a 250 MB model again.
fn etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{:x}-{mtime:x}\"", meta.len())
}

/// Whether an `If-None-Match` / `If-Range` list names `etag` (weak comparison, as RFC 9110
/// asks for If-None-Match).
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// What the client asked, beside the file.
struct FileRequest<'a> {
    head: &'a Head,
    head_only: bool,
    keep: bool,
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes a status line and the headers every response carries.
fn send_head(
    out: &mut TcpStream,
    code: u16,
    ctype: &str,
    len: u64,
    extra: &str,
    keep: bool,
) -> io::Result<()> {
    // A 304 has no body and must not claim the length of one it does not send.
    let length = if code == 304 {
        String::new()
    } else {
        format!("Content-Length: {len}\r\n")
    };
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\n{length}\
         Accept-Ranges: bytes\r\nCache-Control: no-cache\r\n\
         Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n\
         X-Content-Type-Options: nosniff\r\n{extra}Connection: {}\r\n\r\n",
        reason(code),
        if keep { "keep-alive" } else { "close" }
    );
    out.write_all(head.as_bytes())
}

/// A short plain-text response (errors, refusals).
fn status(
    out: &mut TcpStream,
    code: u16,
    msg: &str,
    head_only: bool,
    keep: bool,
) -> io::Result<(u16, bool)> {
    error_response(out, code, msg, head_only, keep)?;
    Ok((code, keep))
}

fn error_response(
    out: &mut TcpStream,
    code: u16,
    msg: &str,
    head_only: bool,
    keep: bool,
) -> io::Result<()> {
    let body = format!("{code} {}: {msg}\n", reason(code));
    let extra = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    send_head(
        out,
        code,
        "text/plain; charset=utf-8",
        body.len() as u64,
        extra,
        keep,
    )?;
    if !head_only {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

fn send_file(
    out: &mut TcpStream,
    mut file: File,
    len: u64,
    name: &str,
    etag: &str,
    req: &FileRequest<'_>,
) -> io::Result<(u16, bool)> {
    let (head_only, keep) = (req.head_only, req.keep);
    let ctype = content_type(name);
    let tag = format!("ETag: {etag}\r\n");
    if req
        .head
        .header("if-none-match")
        .is_some_and(|l| etag_matches(l, etag))
    {
        send_head(out, 304, ctype, 0, &tag, keep)?;
        return Ok((304, keep));
    }
    // If-Range with another validator: the file changed, so send all of it.
    let range = match req.head.header("if-range") {
        Some(v) if v.trim() != etag => None,
        _ => req.head.header("range"),
    };
    let (code, start, n, extra) = match parse_range(range, len) {
        RangeReq::Full => (200, 0, len, tag),
        RangeReq::Partial(a, b) => (
            206,
            a,
            b - a + 1,
            format!("{tag}Content-Range: bytes {a}-{b}/{len}\r\n"),
        ),
        RangeReq::Unsatisfiable => {
            let body = format!("416 {}: the file has {len} bytes\n", reason(416));
            let extra = format!("Content-Range: bytes */{len}\r\n");
            send_head(
                out,
                416,
                "text/plain; charset=utf-8",
                body.len() as u64,
                &extra,
                keep,
            )?;
            if !head_only {
                out.write_all(body.as_bytes())?;
            }
            return Ok((416, keep));
        }
    };
    send_head(out, code, ctype, n, &extra, keep)?;
    if head_only {
        return Ok((code, keep));
    }
    file.seek(SeekFrom::Start(start))?;
    // io::copy streams (sendfile on Linux) without holding the file in memory.
    let sent = io::copy(&mut (&mut file).take(n), out)?;
    if sent != n {
        // The file shrank while being served: the promised length cannot be met, so the
        // connection must end for the client to notice.
        return Ok((code, false));
    }
    Ok((code, keep))
}
