//! Progress bars (indicatif) for model loads, downloads and tuning. They draw only when stderr
//! is a terminal: piped or captured runs (`--json`, tests, CI logs) get no bar bytes at all.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use webjit_engine::loader::{LoaderError, WeightSource};

fn new_bar(len: u64, template: &str, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    // The templates are constants, so a bad one is a programming error caught by any run;
    // fall back to the default style rather than fail a load over it.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// A bar over `len` bytes (a model file or download).
pub fn bytes(len: u64, what: &str) -> ProgressBar {
    new_bar(
        len,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        what,
    )
}

/// A bar over `len` steps (tuning problems).
pub fn steps(len: u64, what: &str) -> ProgressBar {
    new_bar(len, "{msg} [{bar:30}] {pos}/{len} {elapsed}", what)
}

/// A weight source that moves a byte bar as the loader reads it.
pub struct ProgressSource<'a> {
    inner: &'a mut dyn WeightSource,
    bar: ProgressBar,
}

impl<'a> ProgressSource<'a> {
    /// Wraps `inner`; the bar's length is the source's (asked here, so a bad URL fails before
    /// anything is drawn).
    pub fn new(inner: &'a mut dyn WeightSource, what: &str) -> Result<Self, LoaderError> {
        let len = inner.len()?;
        Ok(Self {
            inner,
            bar: bytes(len, what),
        })
    }

    /// Removes the bar (before output is printed below it).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for ProgressSource<'_> {
    fn drop(&mut self) {
        // An error leaves the bar half-drawn otherwise, and the error line would follow it.
        self.bar.finish_and_clear();
    }
}

impl WeightSource for ProgressSource<'_> {
    fn len(&mut self) -> Result<u64, LoaderError> {
        self.inner.len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), LoaderError> {
        self.inner.read_at(offset, buf)?;
        let reached = offset + buf.len() as u64;
        if reached > self.bar.position() {
            self.bar.set_position(reached);
        }
        Ok(())
    }
}

/// A list that moves a step bar as items are pushed (tuning reports, one per problem).
pub struct Tally<T> {
    items: Vec<T>,
    bar: ProgressBar,
}

impl<T> Tally<T> {
    /// `expected` sizes the bar only; more or fewer pushes are fine.
    pub fn new(expected: u64, what: &str) -> Self {
        Self {
            items: Vec::new(),
            bar: steps(expected, what),
        }
    }
    pub fn push(&mut self, item: T) {
        self.items.push(item);
        self.bar.inc(1);
    }
    /// The items; the bar is cleared.
    pub fn finish(self) -> Vec<T> {
        self.bar.finish_and_clear();
        self.items
    }
}
