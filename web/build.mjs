// Bundle the viewer into the Python package (src/jobtail/viewer_static/), which `jobtail serve`
// serves at /. Run through `npm run build` after `npm ci`; the output is not committed.
import * as esbuild from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = here('../src/jobtail/viewer_static/');

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await esbuild.build({
  entryPoints: { app: here('src/main.js'), style: here('src/style.css') },
  outdir: out,
  bundle: true,
  format: 'esm',
  minify: true,
  sourcemap: 'linked',
  target: ['chrome109', 'firefox115', 'safari16'],
  legalComments: 'linked',
  logLevel: 'warning',
});
await copyFile(here('src/index.html'), `${out}/index.html`);
console.log(`viewer built into ${out}`);
