//! Text -> ids, step for step as llama.cpp's `tokenize_impl` for SPM vocabularies.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::SpmTokenizer;
use crate::tokenizer::meta::{partition, Frag};

/// One symbol of the merge chain: a byte range of the escaped text, linked to its neighbours.
/// Merged-away symbols keep `n == 0`.
#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    n: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols whose concatenation is a token.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Bytes of the merged text when queued: a stale entry (a side merged since) no longer
    /// matches and is skipped.
    size: usize,
}

// Max-heap order of llama.cpp's `llm_bigram_spm::comparator`: the highest score first, and
// among equal scores the leftmost pair.
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .partial_cmp(&o.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}

impl SpmTokenizer {
    /// Ids as llama.cpp's `llama_tokenize(text, add_special = add_bos, parse_special = true)`,
    /// i.e. llama-cpp-python's `llm.tokenize(text, add_bos=add_bos, special=True)`: BOS first
    /// when `add_bos` and the model asks for one, special tokens written in the text map to
    /// their ids.
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        self.encode_with(text, add_bos, true)
    }

    /// `add_special`: BOS (and EOS) as the model's `add_bos_token`/`add_eos_token` say.
    /// `parse_special`: control tokens written in the text become their ids (user-defined
    /// tokens always do, as in llama.cpp).
    pub fn encode_with(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        // The dummy-prefix space goes at the start and after every special token.
        let mut prev_special = true;
        let mut escaped = String::new();
        for frag in partition(
            text,
            &self.specials,
            &self.texts,
            &self.attrs,
            parse_special,
        ) {
            match frag {
                Frag::Text { start, end } => {
                    escaped.clear();
                    if self.add_space_prefix && prev_special {
                        escaped.push('\u{2581}');
                    }
                    for c in text[start..end].chars() {
                        escaped.push(if c == ' ' { '\u{2581}' } else { c });
                    }
                    self.merge(&escaped, &mut out);
                    prev_special = false;
                }
                Frag::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Queues the merge of `left` and `right` when their concatenation is a token.
    fn try_bigram(
        &self,
        text: &str,
        syms: &[Sym],
        left: usize,
        right: usize,
        heap: &mut BinaryHeap<Bigram>,
    ) {
        let size = syms[left].n + syms[right].n;
        let start = syms[left].start;
        if let Some(&id) = self.to_id.get(&text[start..start + size]) {
            heap.push(Bigram {
                score: self.scores[id as usize],
                left,
                right,
                size,
            });
        }
    }

    /// llama.cpp's `llm_tokenizer_spm_session::tokenize` on one escaped fragment: start from
    /// single characters, repeatedly merge the best-scoring adjacent pair that forms a token,
    /// then emit each symbol as its token or, failing that, as byte tokens.
    fn merge(&self, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (off, c) in text.char_indices() {
            let i = syms.len();
            syms.push(Sym {
                start: off,
                n: c.len_utf8(),
                prev: i.checked_sub(1),
                next: Some(i + 1),
            });
        }
        let Some(last) = syms.last_mut() else {
            return;
        };
        last.next = None;

        let mut heap = BinaryHeap::new();
        for i in 1..syms.len() {
            self.try_bigram(text, &syms, i - 1, i, &mut heap);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (b.left, b.right);
            if syms[l].n == 0 || syms[r].n == 0 || syms[l].n + syms[r].n != b.size {
                continue;
            }
            syms[l].n += syms[r].n;
            syms[r].n = 0;
            syms[l].next = syms[r].next;
            if let Some(nx) = syms[r].next {
                syms[nx].prev = Some(l);
            }
            if let Some(pv) = syms[l].prev {
                self.try_bigram(text, &syms, pv, l, &mut heap);
            }
            if let Some(nx) = syms[l].next {
                self.try_bigram(text, &syms, l, nx, &mut heap);
            }
        }

        // Every merged symbol is a token (merges are only queued for tokens), so llama.cpp's
        // `rev_merge` re-segmentation never fires: a symbol is a token or a lone character.
        let mut cur = Some(0);
        while let Some(i) = cur {
            let s = syms[i];
            let piece = &text[s.start..s.start + s.n];
            match self.to_id.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(piece.bytes().map(|b| self.byte_ids[b as usize])),
            }
            cur = s.next;
        }
    }
}
