// An in-memory stand-in for the origin private file system (the parts web/js/opfs.js uses:
// directory handles with getDirectoryHandle/getFileHandle/removeEntry/keys, file handles with
// getFile/createWritable), so that source.selftest.mjs can check the OPFS cache in node.
// `quota` bounds the bytes of all files together; a write past it throws QuotaExceededError
// as browsers do. createWritable keeps its writes aside until close(), like the real one.

function notFound(name) {
  return new DOMException(`${name} not found`, 'NotFoundError');
}

class FakeFile {
  constructor(fs, name) {
    this.fs = fs;
    this.name = name;
    this.kind = 'file';
    this.bytes = new Uint8Array(0);
  }
  async getFile() {
    return new File([this.bytes], this.name);
  }
  async createWritable() {
    const parts = [];
    let size = 0;
    let done = false;
    return {
      write: async (chunk) => {
        if (done) throw new TypeError('closed');
        const b = new Uint8Array(chunk.buffer ? chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) : chunk);
        if (this.fs.used() + size + b.byteLength > this.fs.quota) throw new DOMException('quota', 'QuotaExceededError');
        parts.push(b);
        size += b.byteLength;
      },
      close: async () => {
        done = true;
        const out = new Uint8Array(size);
        let o = 0;
        for (const p of parts) {
          out.set(p, o);
          o += p.byteLength;
        }
        this.bytes = out;
      },
      abort: async () => {
        done = true;
      },
    };
  }
}

class FakeDir {
  constructor(fs, name) {
    this.fs = fs;
    this.name = name;
    this.kind = 'directory';
    this.entries = new Map();
  }
  async getDirectoryHandle(name, { create = false } = {}) {
    let e = this.entries.get(name);
    if (!e) {
      if (!create) throw notFound(name);
      e = new FakeDir(this.fs, name);
      this.entries.set(name, e);
    }
    if (e.kind !== 'directory') throw new DOMException(name, 'TypeMismatchError');
    return e;
  }
  async getFileHandle(name, { create = false } = {}) {
    let e = this.entries.get(name);
    if (!e) {
      if (!create) throw notFound(name);
      e = new FakeFile(this.fs, name);
      this.entries.set(name, e);
    }
    if (e.kind !== 'file') throw new DOMException(name, 'TypeMismatchError');
    return e;
  }
  async removeEntry(name) {
    if (!this.entries.delete(name)) throw notFound(name);
  }
  async *keys() {
    for (const k of [...this.entries.keys()]) yield k;
  }
}

export class FakeOpfs {
  constructor({ quota = Infinity } = {}) {
    this.quota = quota;
    this.root = new FakeDir(this, '');
  }
  /** For openSource's getRoot. */
  getRoot = async () => this.root;
  used() {
    let n = 0;
    const walk = (d) => {
      for (const e of d.entries.values()) e.kind === 'file' ? (n += e.bytes.byteLength) : walk(e);
    };
    walk(this.root);
    return n;
  }
  /** {name: size} of the cache folder's files. */
  listing(dir = 'webjit-models-v1') {
    const d = this.root.entries.get(dir);
    return d ? Object.fromEntries([...d.entries].map(([k, v]) => [k, v.bytes.byteLength])) : {};
  }
}
