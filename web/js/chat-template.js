// The chat template as text, without a model: the same string `TextModel.chatPrompt` returns
// (the engine's `chat_prompt`, engine/src/tokenizer/spm/decode.rs: Gemma's turn markers, the
// system text folded into the first user turn, llama.cpp's ASCII trim). It exists so that a
// page can give the first turn to `loadModel({prompt})` before any model is there; the browser
// tests compare it with the engine's for several conversations, so the two cannot drift
// unnoticed.

import { ErrorCode, WebjitError } from './errors.js';

const ROLES = new Set(['user', 'model', 'assistant', 'system']);

/** llama.cpp's `trim`: C isspace (space, \t, \n, \v, \f, \r), not Unicode spaces. */
function cTrim(s) {
  return s.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '');
}

/**
 * `messages` ([{role, content}]) in the chat template, ending with the model-turn opener.
 * Throws INVALID_ARGUMENT for anything that is not such a list (the engine's messages).
 */
export function chatPrompt(messages) {
  if (!Array.isArray(messages)) {
    throw new WebjitError(ErrorCode.INVALID_ARGUMENT, 'messages must be an array of {role, content}');
  }
  let out = '';
  let system = '';
  for (const [i, m] of messages.entries()) {
    if (!m || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new WebjitError(ErrorCode.INVALID_ARGUMENT, `messages[${i}] must be {role: string, content: string}`);
    }
    if (!ROLES.has(m.role)) {
      throw new WebjitError(
        ErrorCode.INVALID_ARGUMENT,
        `message role \`${m.role}\`: expected user, model, assistant or system`,
      );
    }
    if (m.role === 'system') {
      system += cTrim(m.content);
      continue;
    }
    const role = m.role === 'assistant' ? 'model' : m.role;
    out += `<start_of_turn>${role}\n`;
    if (system && role !== 'model') {
      out += `${system}\n\n`;
      system = '';
    }
    out += `${cTrim(m.content)}<end_of_turn>\n`;
  }
  return `${out}<start_of_turn>model\n`;
}
