// Types of the OpenAI-style chat API (openai.js), re-exported by index.d.ts.

import type { TextModel } from './index.js';

/** A message of an OpenAI-style request ('developer' is taken as 'system'). */
export interface ChatCompletionMessageParam {
  role: 'system' | 'developer' | 'user' | 'assistant';
  /** Text, or text parts (joined by '\n'); other part types are refused. */
  content: string | { type: 'text'; text: string }[];
  name?: string;
}

/** `engine.chat.completions.create`'s request: OpenAI's fields that a local text model can
 *  honour. Others, and values it cannot honour, reject with INVALID_ARGUMENT. */
export interface ChatCompletionRequest {
  messages: ChatCompletionMessageParam[];
  /** A TextModel of this engine; a string or nothing means the text model loaded last. */
  model?: TextModel | string | null;
  stream?: boolean | null;
  /** With stream: a last chunk with `usage` and no choices. */
  stream_options?: { include_usage?: boolean } | null;
  /** Default: until the end-of-turn token or a full context (finish_reason 'length'). */
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  /** [0, 2], default 1; 0 is greedy. */
  temperature?: number | null;
  /** [0, 1], default 1 (0 is greedy). Sampling keeps at most the 64 most likely tokens. */
  top_p?: number | null;
  /** Same seed and settings, same answer. Default: a random seed. */
  seed?: number | null;
  /** Ends the answer where the text first contains one of these (not included). */
  stop?: string | string[] | null;
  /** Only 1. */
  n?: number | null;
  /** Only 0 (the sampler has llama.cpp's repetition penalty, not OpenAI's additive ones). */
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  /** llama.cpp's (and WebLLM's) multiplicative penalty over the last 64 tokens; 1 = off. */
  repetition_penalty?: number | null;
  logprobs?: false | null;
  response_format?: { type: 'text' } | null;
  tools?: [] | null;
  tool_choice?: 'none' | 'auto' | null;
  /** Stops the generation: the promise or the iteration rejects with ABORTED. */
  signal?: AbortSignal;
  user?: string;
  store?: boolean | null;
  metadata?: Record<string, string> | null;
  parallel_tool_calls?: boolean;
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** 'stop': end-of-turn token or a stop string; 'length': max_tokens or a full context. */
export type ChatCompletionFinishReason = 'stop' | 'length';

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  /** Unix seconds. */
  created: number;
  /** The request's string, else the model file's name. */
  model: string;
  choices: {
    index: 0;
    message: { role: 'assistant'; content: string };
    finish_reason: ChatCompletionFinishReason;
    logprobs: null;
  }[];
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** One choice; none in the usage chunk. The first delta is {role: 'assistant', content: ''},
   *  then {content}, then {} with finish_reason. */
  choices: {
    index: 0;
    delta: { role?: 'assistant'; content?: string };
    finish_reason: ChatCompletionFinishReason | null;
    logprobs: null;
  }[];
  /** With stream_options.include_usage: null, except on the last chunk. */
  usage?: CompletionUsage | null;
}

/** `for await (const chunk of stream)`; leaving the loop stops the generation. */
export interface ChatCompletionStream extends AsyncGenerator<ChatCompletionChunk, void> {
  /** As the OpenAI client's Stream: `abort()` stops the generation (the iteration rejects
   *  with ABORTED). */
  readonly controller: AbortController;
}
