// The one setting webjit needs in Vite, and only when the package is installed from a folder
// (a `file:` dependency, `npm link`): web/README.md ("With Vite") shows this file as is.
// The folder is outside the project, so Vite's dev server refuses (403) the files of it that
// no import names: the worker script and the .wasm file.
import { realpathSync } from 'node:fs';
import { searchForWorkspaceRoot } from 'vite';

export default {
  server: { fs: { allow: [searchForWorkspaceRoot(process.cwd()), realpathSync('node_modules/webjit')] } },
};
