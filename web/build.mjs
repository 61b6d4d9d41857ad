// Builds the browser client into dist/: app.js (esbuild bundle of src/app.js
// with mediasoup-client and protoo-client), index.html and style.css.
//
//   node build.mjs            (what `make web` runs after `npm ci`)
import * as esbuild from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'src');
const dist = join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

const result = await esbuild.build({
  entryPoints: [join(src, 'app.js')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome105', 'firefox110', 'safari16'],
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
  metafile: true,
});
await copyFile(join(src, 'index.html'), join(dist, 'index.html'));
await copyFile(join(src, 'style.css'), join(dist, 'style.css'));

const bytes = result.metafile.outputs[Object.keys(result.metafile.outputs).find((f) => f.endsWith('app.js'))].bytes;
console.log(`web: dist/index.html, dist/style.css, dist/app.js (${Math.round(bytes / 1024)} KiB)`);
