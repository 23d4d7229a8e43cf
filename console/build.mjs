// Builds the console and the participant page into dist/ (committed; the
// hub embeds it): minified bundles with content-hashed names under
// dist/assets/ (cached for a year by the hub), and the two HTML pages that
// name them (revalidated on every load).
//
//   node build.mjs           rebuild dist/
//   node build.mjs --check   build into a temporary folder and fail if it
//                            differs from the committed dist/ (npm test, CI)
//
// The output depends only on the sources, the SDK's sources
// (../clients/typescript/src) and the locked packages, so the same
// checkout builds the same bytes anywhere.
import * as esbuild from 'esbuild';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sdk = resolve(here, '../clients/typescript');
const check = process.argv.includes('--check');
const out = check ? mkdtempSync(join(tmpdir(), 'eva-console-')) : join(here, 'dist');

/**
 * The SDK is bundled from its sources. Its own imports of packages
 * (@msgpack/msgpack) resolve from this folder's node_modules (locked by
 * package-lock.json), never from whatever clients/typescript/node_modules
 * holds, so the bundle does not depend on that folder's state.
 */
const packagesFromHere = {
  name: 'packages-from-console',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.pluginData?.fromHere || !args.importer.startsWith(sdk)) return undefined;
      return build.resolve(args.path, { kind: args.kind, resolveDir: here, pluginData: { fromHere: true } });
    });
  },
};

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { console: 'src/console/main.ts', participant: 'src/participant/main.ts' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome109', 'firefox115', 'safari16'],
  platform: 'browser',
  charset: 'utf8',
  legalComments: 'eof',
  entryNames: 'assets/[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  outdir: out,
  alias: { '@eva-hub/client': join(sdk, 'src/index.ts') },
  plugins: [packagesFromHere],
  metafile: true,
  logLevel: 'warning',
});

// Each page names its entry's hashed script and stylesheet.
for (const page of ['console', 'participant']) {
  const outputs = Object.entries(result.metafile.outputs);
  const js = outputs.find(([, o]) => o.entryPoint === `src/${page}/main.ts`)?.[0];
  const css = outputs.find(([, o]) => o.entryPoint === `src/${page}/main.ts`)?.[1].cssBundle;
  if (!js || !css) throw new Error(`no bundle for ${page}`);
  const url = (file) => `/console/${relative(out, resolve(here, file)).split('\\').join('/')}`;
  const html = readFileSync(join(here, `src/${page}/index.html`), 'utf8').replace('{{js}}', url(js)).replace('{{css}}', url(css));
  writeFileSync(join(out, `${page}.html`), html);
}

function files(dir) {
  const found = new Map();
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else found.set(relative(dir, p).split('\\').join('/'), readFileSync(p));
    }
  };
  walk(dir);
  return found;
}

const built = files(out);
if (check) {
  const committed = files(join(here, 'dist'));
  const problems = [];
  for (const [name, bytes] of built) {
    if (!committed.has(name)) problems.push(`missing from dist/: ${name}`);
    else if (!committed.get(name).equals(bytes)) problems.push(`differs: dist/${name}`);
  }
  for (const name of committed.keys()) if (!built.has(name)) problems.push(`stale in dist/: ${name}`);
  rmSync(out, { recursive: true, force: true });
  if (problems.length > 0) {
    console.error(`console/dist/ is not what the sources build:\n  ${problems.join('\n  ')}\nRun \`npm run build\` in console/ and commit console/dist/.`);
    process.exit(1);
  }
  console.log(`console/dist/ is up to date (${built.size} files)`);
} else {
  for (const [name, bytes] of built) console.log(`${name}  ${(bytes.length / 1024).toFixed(1)} KiB`);
}
