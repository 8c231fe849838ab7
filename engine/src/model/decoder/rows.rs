//! Every position's hidden state and the logits of chosen rows, for scoring a text
//! (perplexity) rather than generating from it: `forward` keeps only the last row.

use super::block::{block, embed, BlockInput, Input, Step};
use super::Decoder;
use crate::error::{Error, Result};
use crate::ops;
use crate::recorder::Recorder;
use crate::tensor::{DType, Tensor};

impl Decoder {
    /// Records `tokens` as a fresh context (the caches must be empty: call `reset` first)
    /// through every block and returns the last block's output for every position,
    /// [T, d_model], before the output norm.
    pub fn forward_hidden(&mut self, rec: &mut Recorder, tokens: &[u32]) -> Result<Tensor> {
        if self.position() != 0 {
            return Err(Error::InvalidArgument {
                op: "forward",
                detail: format!(
                    "every position's hidden state needs a fresh context, but {} positions are \
                     cached (reset first)",
                    self.position()
                ),
            });
        }
        self.forward_hidden_at(rec, tokens)
    }

    /// As `forward_hidden`, from the next position of the cached context: one token runs the
    /// decode step's attention, which reads the KV cache as generation does (a kivi2 cache's
    /// quantized groups included).
    pub fn forward_hidden_at(&mut self, rec: &mut Recorder, tokens: &[u32]) -> Result<Tensor> {
        ops::check_ids("forward", tokens, self.cfg.vocab)?;
        let (pos, t) = (self.position(), tokens.len());
        self.check_room(pos, t)?;
        let mut step = Step::new((pos as u32..(pos + t) as u32).collect());
        let mut x = BlockInput::new(embed(
            rec,
            &self.cfg,
            &self.tok_embd,
            Input::Host(tokens),
            t,
        )?);
        for i in 0..self.layers.len() {
            let next_norm = self.layers.get(i + 1).map(|next| &next.attn_norm);
            x = block(
                rec,
                &self.cfg,
                &self.layers[i],
                &mut self.caches[i],
                x,
                next_norm,
                &mut step,
            )?;
        }
        x.hidden()
    }

    /// Logits of rows `start..start + n` of `hidden` ([T, d_model] from `forward_hidden`):
    /// output norm, output projection and the final soft-cap, [n, vocab].
    pub fn logits_of_rows(
        &self,
        rec: &mut Recorder,
        hidden: &Tensor,
        start: usize,
        n: usize,
    ) -> Result<Tensor> {
        let &[t, d] = hidden.shape() else {
            return Err(rows_error(format!(
                "hidden state {:?} is not [T, d]",
                hidden.shape()
            )));
        };
        if n == 0 || start + n > t || d != self.cfg.d_model || hidden.is_segmented() {
            return Err(rows_error(format!(
                "rows {start}..{} of a hidden state {:?} (d_model {}, one buffer)",
                start + n,
                hidden.shape(),
                self.cfg.d_model
            )));
        }
        let rows = rec.empty(&[n, d], DType::F32)?;
        let row_bytes = (d * 4) as u64;
        rec.copy(
            &hidden.segments()[0].buffer,
            row_bytes * start as u64,
            &rows.segments()[0].buffer,
            0,
            row_bytes * n as u64,
        );
        let xn = ops::rms_norm(&rows, &self.output_norm, self.cfg.eps, 0.0).record(rec)?;
        let logits = self.output.forward(rec, &xn)?;
        match self.cfg.final_softcap {
            Some(cap) => ops::softcap(&logits, cap).record(rec),
            None => Ok(logits),
        }
    }
}

fn rows_error(detail: String) -> Error {
    Error::Shape {
        op: "logits_of_rows",
        detail,
    }
}
