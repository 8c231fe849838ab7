//! `webjit serve` over a real socket: GET, HEAD, ranges, 416, 404, traversal, headers, and its
//! argument errors.

use super::*;

#[test]
fn serve_answers_get_head_ranges_and_refuses_traversal() {
    let tmp = TempDir::new("serve");
    let mut r = Rand::new(23);
    let len = r.range(200_000, 400_000);
    let data: Vec<u8> = r.ids(len, 256).iter().map(|&b| b as u8).collect();
    tmp.write("root/data.bin", &data);
    tmp.write("root/index.html", b"<!doctype html><title>t</title>");
    tmp.write("root/app.wasm", b"\0asm\x01\0\0\0");
    tmp.write("root/sub/app.mjs", b"export {}");
    tmp.write("pkg/webjit.js", b"export default 1");
    tmp.write("models/m.gguf", &data[..1000]);
    let secret = format!("secret-{}", r.range(0, 1 << 30));
    tmp.write("secret.txt", secret.as_bytes());
    let root = tmp.0.join("root").to_string_lossy().into_owned();
    let pkg = format!("/pkg/={}", tmp.0.join("pkg").to_string_lossy());
    let models = tmp.0.join("models").to_string_lossy().into_owned();
    let s = Server::start(&["--root", &root, "--root", &pkg, "--models", &models]);
    let a = s.addr.as_str();

    let get = http(a, "GET", "/data.bin", &[]);
    assert_eq!(get.status, 200);
    assert!(get.body == data, "GET body differs from the file");
    for (h, want) in [
        ("content-length", len.to_string()),
        ("accept-ranges", "bytes".into()),
        ("cache-control", "no-cache".into()),
        ("cross-origin-opener-policy", "same-origin".into()),
        ("cross-origin-embedder-policy", "require-corp".into()),
        ("content-type", "application/octet-stream".into()),
    ] {
        assert_eq!(get.header(h), Some(want.as_str()), "{h}");
    }
    // Revalidation: the ETag of the GET answers If-None-Match with a bodyless 304, and an
    // If-Range that does not match turns a range request into the whole file.
    let etag = get.header("etag").expect("an ETag").to_string();
    let mut conn = TcpStream::connect(a).expect("connecting");
    let req = format!("GET /data.bin HTTP/1.1\r\nHost: {a}\r\nIf-None-Match: {etag}\r\n\r\n");
    std::io::Write::write_all(&mut conn, req.as_bytes()).expect("sending");
    assert_eq!(read_response(&mut BufReader::new(conn), true).status, 304);
    let stale = http(
        a,
        "GET",
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")],
    );
    assert_eq!((stale.status, stale.body.len()), (200, len));
    let fresh = http(
        a,
        "GET",
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!((fresh.status, &fresh.body[..]), (206, &data[..10]));
    let head = http(a, "HEAD", "/data.bin", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );

    let (x, y) = (r.range(0, len / 2), r.range(len / 2, len));
    let suffix = r.range(1, 5000);
    for (range, lo, hi) in [
        (format!("bytes={x}-{y}"), x, y),
        (format!("bytes={x}-"), x, len - 1),
        (format!("bytes=-{suffix}"), len - suffix, len - 1),
        (format!("bytes={y}-{}", len + 10), y, len - 1),
    ] {
        let part = http(a, "GET", "/data.bin", &[("Range", &range)]);
        assert_eq!(part.status, 206, "{range} (seed {})", r.seed);
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {lo}-{hi}/{len}").as_str()),
            "{range}"
        );
        assert!(
            part.body == data[lo..=hi],
            "{range}: wrong bytes (seed {})",
            r.seed
        );
    }
    for range in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 1, len + 9),
        "bytes=-0".into(),
    ] {
        let bad = http(a, "GET", "/data.bin", &[("Range", &range)]);
        assert_eq!(bad.status, 416, "{range}");
        assert_eq!(
            bad.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );
    }

    for (target, ctype) in [
        ("/", "text/html; charset=utf-8"),
        ("/app.wasm", "application/wasm"),
        ("/sub/app.mjs", "text/javascript; charset=utf-8"),
        ("/pkg/webjit.js", "text/javascript; charset=utf-8"),
        ("/models/m.gguf", "application/octet-stream"),
    ] {
        let resp = http(a, "GET", target, &[]);
        assert_eq!(resp.status, 200, "{target}");
        assert_eq!(resp.header("content-type"), Some(ctype), "{target}");
    }
    assert_eq!(http(a, "GET", "/models/m.gguf", &[]).body, data[..1000]);
    let moved = http(a, "GET", "/sub", &[]);
    assert_eq!(
        (moved.status, moved.header("location")),
        (301, Some("/sub/"))
    );
    assert_eq!(http(a, "GET", "/no-such-file", &[]).status, 404);
    assert_eq!(http(a, "HEAD", "/no-such-file", &[]).status, 404);
    assert_eq!(http(a, "POST", "/data.bin", &[]).status, 405);

    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/sub/../../secret.txt",
        "/models/..%2f..%2fsecret.txt",
        "/pkg/%2e%2e/%2e%2e/secret.txt",
        "/.%2e/secret.txt",
    ] {
        let resp = http(a, "GET", target, &[]);
        assert!(
            matches!(resp.status, 400 | 403 | 404),
            "{target}: {}",
            resp.status
        );
        assert!(
            !String::from_utf8_lossy(&resp.body).contains(&secret),
            "{target} leaked a file outside the root"
        );
    }

    // A client that leaves in the middle of a file costs its connection, not the server. The
    // file is sparse and larger than any socket buffer, so the server is still sending.
    std::fs::File::create(tmp.0.join("root/big.bin"))
        .and_then(|f| f.set_len(16 << 20))
        .expect("creating a sparse file");
    for _ in 0..3 {
        let mut c = TcpStream::connect(a).expect("connecting");
        let req = format!("GET /big.bin HTTP/1.1\r\nHost: {a}\r\n\r\n");
        std::io::Write::write_all(&mut c, req.as_bytes()).expect("sending");
        let mut first = [0u8; 16];
        std::io::Read::read_exact(&mut c, &mut first).expect("reading a little");
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        http(a, "GET", "/data.bin", &[]).body,
        data,
        "after clients left early"
    );

    // Keep-alive: two requests on one connection, both answered in order.
    let mut conn = TcpStream::connect(a).expect("connecting");
    let req = format!("GET /pkg/webjit.js HTTP/1.1\r\nHost: {a}\r\n\r\nHEAD /data.bin HTTP/1.1\r\nHost: {a}\r\n\r\n");
    std::io::Write::write_all(&mut conn, req.as_bytes()).expect("sending");
    let mut rd = BufReader::new(conn);
    assert_eq!(read_response(&mut rd, false).body, b"export default 1");
    let second = read_response(&mut rd, true);
    assert_eq!(
        second.header("content-length"),
        Some(len.to_string().as_str())
    );
}

#[test]
fn serve_argument_errors_are_one_line() {
    let tmp = TempDir::new("serve-args");
    let missing = tmp.0.join("no-such-dir");
    let missing = missing.to_string_lossy();
    let line = webjit(&["serve", "--port", "0", "--root", &missing], &[]).one_line_error("--root");
    assert!(line.contains("no-such-dir"), "{line}");
    // A port that is taken.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = busy.local_addr().expect("its address").port().to_string();
    let line = webjit(&["serve", "--port", &port], &[]).one_line_error("busy port");
    assert!(line.contains(&port), "{line}");
}

/// Symlinks are followed only while their target stays inside the served directory: a link to
/// a file or a folder outside (`/etc/passwd`-style) is refused with 403 on every mount, a link
/// that stays inside (as model caches use: names linking to blobs) is served with the Content-
/// Type of the requested name, and a folder whose `index.html` links outside is refused too.
#[test]
fn serve_refuses_symlinks_that_leave_the_served_directory() {
    use std::os::unix::fs::symlink;
    let tmp = TempDir::new("serve-links");
    let secret = format!("secret-{}", std::process::id());
    tmp.write("outside/passwd", secret.as_bytes());
    tmp.write("outside/index.html", secret.as_bytes());
    tmp.write("models/blobs/abc123", b"GGUF-inside");
    tmp.write("root/real.html", b"<p>inside</p>");
    tmp.write("pkg/webjit.js", b"export default 1");
    let out = tmp.0.join("outside");
    let link = |target: &std::path::Path, at: &str| {
        symlink(target, tmp.0.join(at)).expect("making a symlink");
    };
    link(&out.join("passwd"), "models/p");
    link(&out, "models/e");
    link(&out.join("passwd"), "pkg/p.js");
    link(&out.join("passwd"), "root/p.html");
    std::fs::create_dir_all(tmp.0.join("root/dir")).expect("a folder");
    link(&out.join("index.html"), "root/dir/index.html");
    // Inside links: absolute and relative.
    link(&tmp.0.join("models/blobs/abc123"), "models/m.gguf");
    symlink("blobs/abc123", tmp.0.join("models/rel.gguf")).expect("a relative symlink");
    link(&tmp.0.join("root/real.html"), "root/alias.html");
    let root = tmp.0.join("root").to_string_lossy().into_owned();
    let pkg = format!("/pkg/={}", tmp.0.join("pkg").to_string_lossy());
    let models = tmp.0.join("models").to_string_lossy().into_owned();
    let s = Server::start(&["--root", &root, "--root", &pkg, "--models", &models]);
    let a = s.addr.as_str();
    for path in [
        "/models/p",
        "/models/e/passwd",
        "/models/e/",
        "/pkg/p.js",
        "/p.html",
        "/dir/",
    ] {
        for method in ["GET", "HEAD"] {
            let r = http(a, method, path, &[]);
            assert_eq!(r.status, 403, "{method} {path}");
            let body = String::from_utf8_lossy(&r.body);
            assert!(!body.contains(&secret), "{method} {path} leaked the file");
        }
    }
    for (path, want, ctype) in [
        (
            "/models/m.gguf",
            &b"GGUF-inside"[..],
            "application/octet-stream",
        ),
        (
            "/models/rel.gguf",
            &b"GGUF-inside"[..],
            "application/octet-stream",
        ),
        (
            "/alias.html",
            &b"<p>inside</p>"[..],
            "text/html; charset=utf-8",
        ),
        (
            "/pkg/webjit.js",
            &b"export default 1"[..],
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = http(a, "GET", path, &[]);
        assert_eq!((r.status, &r.body[..]), (200, want), "{path}");
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
    }
}
