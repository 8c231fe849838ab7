// Errors of the webjit package: every failure is a `WebjitError` (an `Error`) with a stable
// string `code`, whether it came from the engine (wasm), from the network, or from this layer,
// and whether it crossed the worker boundary or not.

/** Codes raised by this JS layer itself (the engine adds its own, e.g. SHAPE, BAD_TOKENIZER). */
export const ErrorCode = Object.freeze({
  WEBGPU_UNAVAILABLE: 'WEBGPU_UNAVAILABLE',
  BAD_MODEL_FILE: 'BAD_MODEL_FILE',
  UNSUPPORTED_TENSOR_TYPE: 'UNSUPPORTED_TENSOR_TYPE',
  UNSUPPORTED_MODEL: 'UNSUPPORTED_MODEL',
  UNSUPPORTED_ARCHITECTURE: 'UNSUPPORTED_ARCHITECTURE',
  CHAT_TEMPLATE: 'CHAT_TEMPLATE',
  OUT_OF_MEMORY: 'OUT_OF_MEMORY',
  DEVICE_LOST: 'DEVICE_LOST',
  ABORTED: 'ABORTED',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NETWORK: 'NETWORK',
  DISPOSED: 'DISPOSED',
  BUSY: 'BUSY',
  INVALID_STATE: 'INVALID_STATE',
  WORKER: 'WORKER',
  INTERNAL: 'INTERNAL',
});

export class WebjitError extends Error {
  /**
   * @param {string} code stable machine-readable code (see ErrorCode)
   * @param {string} message human-readable detail
   * @param {object} [extra] structured fields (e.g. {status} for NETWORK), copied onto the error
   */
  constructor(code, message, extra) {
    super(message);
    this.name = 'WebjitError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

function isAbort(e) {
  return e && (e.name === 'AbortError' || e.code === ErrorCode.ABORTED);
}

/** Any thrown value -> WebjitError, keeping the engine's `code` when it has one. */
export function toWebjitError(e) {
  if (e instanceof WebjitError) return e;
  if (isAbort(e)) return new WebjitError(ErrorCode.ABORTED, e.message || 'aborted');
  if (e && typeof e === 'object' && typeof e.code === 'string' && e.code) {
    // The engine's errors carry `detail`, its finer code (e.g. LOAD_TRUNCATED under BAD_MODEL_FILE).
    const out = new WebjitError(e.code, e.message ?? String(e), typeof e.detail === 'string' ? { detail: e.detail } : undefined);
    if (e.stack) out.stack = e.stack;
    return out;
  }
  if (e && e.name === 'QuotaExceededError') {
    return new WebjitError(ErrorCode.QUOTA_EXCEEDED, e.message);
  }
  // A wasm trap (a Rust panic) or a bug in this layer: no stable cause to report.
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new WebjitError(ErrorCode.INTERNAL, msg);
}

/** Plain object for postMessage (Error subclasses lose their class and fields in a clone). */
export function serializeError(e) {
  const w = toWebjitError(e);
  const out = { code: w.code, message: w.message, stack: w.stack };
  for (const k of ['status', 'url', 'detail']) if (k in w) out[k] = w[k];
  return out;
}

export function deserializeError(o) {
  const { code, message, stack, ...extra } = o || {};
  const e = new WebjitError(code || ErrorCode.INTERNAL, message || 'unknown error', extra);
  if (stack) e.stack = stack;
  return e;
}

export function abortedError(signal) {
  const r = signal && signal.reason;
  const why = r instanceof Error ? r.message : r !== undefined ? String(r) : 'aborted';
  return new WebjitError(ErrorCode.ABORTED, `aborted: ${why}`);
}
