// The package's dedicated module Worker: runs the engine off the page's thread. Messages:
//   in:  {id, method, args}            -> out: {id, value} | {id, error}, plus {id, event} while running
//   in:  {abort: id, reason}           (the AbortSignal of request `id` fired on the page)
import { Core } from './core.js';
import { serializeError } from './errors.js';

const core = new Core();
// The device went away: the page's Engine learns it without a request.
core.onLost = (reason) => self.postMessage({ deviceLost: reason });
const running = new Map(); // request id -> AbortController

self.onmessage = async (ev) => {
  const msg = ev.data || {};
  if (msg.abort !== undefined) {
    running.get(msg.abort)?.abort(msg.reason ?? 'aborted');
    return;
  }
  const { id, method, args } = msg;
  const ac = new AbortController();
  running.set(id, ac);
  const emit = (event) => self.postMessage({ id, event });
  try {
    const { value, transfer } = await core.call(method, args, { emit, signal: ac.signal });
    self.postMessage({ id, value }, transfer || []);
  } catch (e) {
    self.postMessage({ id, error: serializeError(e) });
  } finally {
    running.delete(id);
  }
};
