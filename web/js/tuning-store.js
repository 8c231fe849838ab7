// Tuning records in IndexedDB, one JSON document per device fingerprint (the engine exports
// and imports them; the winning configs, never WGSL, see DESIGN.md "Remember").

const DB = 'webjit';
const STORE = 'tuning';

function open() {
  return new Promise((resolve, reject) => {
    if (typeof indexedDB === 'undefined') return reject(new Error('IndexedDB unavailable'));
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function tx(mode, fn) {
  return open().then(
    (db) =>
      new Promise((resolve, reject) => {
        const t = db.transaction(STORE, mode);
        const req = fn(t.objectStore(STORE));
        t.oncomplete = () => {
          db.close();
          resolve(req.result);
        };
        t.onerror = t.onabort = () => {
          db.close();
          reject(t.error || req.error);
        };
      }),
  );
}

export function loadTuning(fingerprint) {
  return tx('readonly', (s) => s.get(fingerprint));
}

export function saveTuning(fingerprint, json) {
  return tx('readwrite', (s) => s.put(json, fingerprint));
}

export function clearTuning() {
  return tx('readwrite', (s) => s.clear());
}
