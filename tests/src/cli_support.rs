//! Support for the CLI tests (tests/tests/cli.rs): the built `webjit` binary, runs of it, a
//! scratch directory, a `webjit serve` child process and a raw HTTP/1.1 client.
//!
//! `CARGO_BIN_EXE_webjit` exists only in the tests of the package that owns the binary, and
//! Cargo does not build a dependency's binaries for its dependents. So the binary is built (a
//! no-op when it is fresh) by running Cargo itself, and its path is read from Cargo's own
//! artifact message: right for any target dir, profile or platform. `WEBJIT_BIN` overrides it.
//!
//! The build is `--workspace --bins` so features unify as in `cargo test --workspace` (a
//! `-p webjit-cli` build resolves them differently and would recompile the engine); and
//! demo/tests/version.rs makes `cargo test --workspace` build the binary before any test
//! runs, so under `make test` this step finds it fresh.

pub use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The `webjit` binary, built on first use with the profile these tests were built with.
pub fn webjit_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("WEBJIT_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "WEBJIT_BIN={} is not a file", p.display());
            return p;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate lives in the workspace");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace).args([
            "build",
            "--workspace",
            "--bins",
            "--message-format=json-render-diagnostics",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo to build the webjit binary");
        assert!(
            out.status.success(),
            "cargo build --workspace --bins failed"
        );
        let exe = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["reason"] == "compiler-artifact"
                    && v["target"]["name"] == "webjit"
                    && v["profile"]["test"] == false
            })
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no executable for the webjit binary");
        assert!(exe.is_file(), "{} does not exist", exe.display());
        exe
    })
}

/// A finished run of the binary, its output as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Success, with the output shown when not.
    pub fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self, what: &str) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The failure contract: a non-zero exit, nothing on stdout and exactly one line on stderr
    /// (`error [CODE]: ...`). Returns that line.
    pub fn one_line_error(&self, what: &str) -> String {
        let show = format!(
            "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        assert!(matches!(self.code, Some(c) if c != 0), "{show}");
        assert!(self.stdout.trim().is_empty(), "{show}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{show}");
        assert!(lines[0].starts_with("error ["), "{show}");
        lines[0].to_string()
    }
}

/// Runs `webjit ARGS` with extra environment variables and no stdin.
pub fn webjit(args: &[&str], env: &[(&str, &OsStr)]) -> Run {
    let mut cmd = Command::new(webjit_bin());
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("spawning webjit"))
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("webjit-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("creating a temp dir");
        Self(p)
    }
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("creating a temp subdir");
        }
        std::fs::write(&p, bytes).expect("writing a temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `webjit serve` child on a free port, killed on drop.
pub struct Server {
    child: Child,
    /// `host:port`
    pub addr: String,
    /// `http://host:port/`
    pub url: String,
}

impl Server {
    /// Starts `webjit serve --port 0 ARGS` and waits for the URL line it prints.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(webjit_bin())
            .args(["serve", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // The request log is not read: a full pipe would block the server.
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning webjit serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut server = Self {
            child,
            addr: String::new(),
            url: String::new(),
        };
        assert!(
            matches!(read, Ok(n) if n > 0),
            "webjit serve printed no URL line"
        );
        let url = line
            .trim()
            .strip_prefix("webjit serve: ")
            .unwrap_or_else(|| panic!("unexpected first line from webjit serve: {line:?}"));
        let addr = url
            .strip_prefix("http://")
            .and_then(|r| r.strip_suffix('/'))
            .unwrap_or_else(|| panic!("not an http://host:port/ URL: {url:?}"));
        server.addr = addr.to_string();
        server.url = url.to_string();
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `r` (the body by Content-Length; none for HEAD).
pub fn read_response<R: BufRead>(r: &mut R, head_only: bool) -> Response {
    let mut status_line = String::new();
    r.read_line(&mut status_line)
        .expect("reading a status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("reading a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (n, v) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?}"));
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let len: usize = resp
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length header");
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).expect("reading the body");
    }
    resp
}

/// Sends one request (a raw request target: the test decides the exact bytes) on a new
/// connection and reads the answer.
pub fn http(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connecting to webjit serve");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("setting a timeout");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("sending a request");
    read_response(&mut BufReader::new(s), method == "HEAD")
}
