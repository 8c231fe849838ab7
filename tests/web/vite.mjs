// The install test of the package: `npm pack` web/pkg, install the tarball into a fresh copy
// of tests/web/vite-app (offline: the package has no dependencies), `vite build` it. Returns
// the dist dir, which run.mjs serves under /vite/ and opens in Chromium.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');

export function buildViteApp(tools) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'webjit-vite-'));
  const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const packed = JSON.parse(npm(['pack', path.join(ROOT, 'web/pkg'), '--pack-destination', work, '--json'], work))[0];
  const app = path.join(work, 'app');
  fs.cpSync(path.join(HERE, 'vite-app'), app, { recursive: true });
  fs.writeFileSync(
    path.join(app, 'package.json'),
    JSON.stringify({ name: 'webjit-vite-test', private: true, type: 'module', dependencies: { webjit: `file:../${packed.filename}` } }, null, 2),
  );
  npm(['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error'], app);
  execFileSync(process.execPath, [path.join(tools, 'node_modules/vite/bin/vite.js'), 'build', '--base', '/vite/'], {
    cwd: app,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const dist = path.join(app, 'dist');
  const files = fs.readdirSync(path.join(dist, 'assets'));
  return { dist, work, files, tarball: packed.filename, size: packed.size };
}
