#!/usr/bin/env node
// Generates the SDK's wire types from the hub's own documents, so they
// cannot drift from the Rust types those are generated from:
//   src/protocol.gen.ts  from docs/protocol.schema.json (WebSocket frames)
//   src/rest.gen.ts      from docs/openapi.json (REST bodies: the
//                        `components.schemas` of the OpenAPI 3.1 document,
//                        which are JSON Schema 2020-12)
//
//   node scripts/gen-types.mjs           writes both files
//   node scripts/gen-types.mjs --check   fails if a committed file differs
//                                        from a fresh generation
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const here = dirname(fileURLToPath(import.meta.url));
const schemaPath = resolve(here, '../../../docs/protocol.schema.json');
const openapiPath = resolve(here, '../../../docs/openapi.json');

// Keywords that say what a value is. A schema with none of them accepts
// any JSON value (`context`, `data`, `metadata` are `{"default": null}`).
const SHAPE = ['type', '$ref', 'oneOf', 'anyOf', 'allOf', 'const', 'enum', 'properties', 'items'];

// The schema says "any JSON value" with a schema that has none of the
// keywords above (`{"default": null}` for `publish.data`, `custom.data` and
// `Alert.metadata`); json-schema-to-typescript would guess an object for
// those, so they are marked `unknown`. (`$ref`s with sibling keywords,
// which the generator drops, are written as `allOf` by the hub's schema
// generator itself, so they need no rewriting here.)
function markAnyValue(node, isSchema) {
  if (Array.isArray(node)) return node.map((n) => markAnyValue(n, isSchema));
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'properties' || k === '$defs') {
      out[k] = Object.fromEntries(Object.entries(v).map(([name, s]) => [name, markAnyValue(s, true)]));
    } else if (['items', 'oneOf', 'anyOf', 'allOf'].includes(k)) {
      out[k] = markAnyValue(v, true);
    } else {
      out[k] = v;
    }
  }
  if (isSchema && !SHAPE.some((k) => k in out)) out.tsType = 'unknown';
  return out;
}

/** Close and error code tables from the schema's `x-reconnect` and `x-retryable`. */
function codeTables(schema) {
  const close = schema.$defs.CloseCode.oneOf;
  const retryable = schema.$defs.ErrorCode['x-retryable'];
  const lines = [];
  lines.push('/** WebSocket close codes the hub sends (schema `CloseCode`). */');
  lines.push(`export type CloseCode = ${close.map((c) => c.const).join(' | ')};`);
  lines.push('');
  lines.push('/** Each close code\'s name and whether a client reconnects after it (`x-reconnect`). */');
  lines.push('export const CLOSE_CODES: Readonly<Record<CloseCode, { readonly name: string; readonly reconnect: boolean }>> = {');
  for (const c of close) lines.push(`  ${c.const}: { name: ${JSON.stringify(c.title)}, reconnect: ${c['x-reconnect']} },`);
  lines.push('};');
  lines.push('');
  lines.push('/** Error codes worth retrying after `retry_after_ms` (`x-retryable`). */');
  lines.push(`export const RETRYABLE_ERROR_CODES: readonly ErrorCode[] = ${JSON.stringify(retryable)};`);
  return lines.join('\n') + '\n';
}

const OPTIONS = {
  additionalProperties: false,
  unreachableDefinitions: true,
  strictIndexSignatures: true,
  format: true,
};

async function generateProtocol() {
  const raw = JSON.parse(readFileSync(schemaPath, 'utf8'));
  const schema = markAnyValue(raw, true);
  const types = await compile(schema, 'EvaV1', {
    ...OPTIONS,
    bannerComment:
      '/* Generated from docs/protocol.schema.json by scripts/gen-types.mjs (npm run gen:types). Do not edit. */',
  });
  return types + '\n' + codeTables(raw);
}

/**
 * `#/components/schemas/X` → `#/$defs/X`, so the schemas compile as one
 * JSON Schema document. A `description` beside a `$ref` is dropped: the
 * generator would otherwise make a second, numbered copy of the type
 * (`LiveView1`) just to carry it.
 */
function localRefs(node) {
  if (Array.isArray(node)) return node.map(localRefs);
  if (node === null || typeof node !== 'object') return node;
  if (typeof node.$ref === 'string') {
    const { $ref, description: _description, ...rest } = node;
    return { $ref: $ref.replace('#/components/schemas/', '#/$defs/'), ...localRefs(rest) };
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, localRefs(v)]));
}

async function generateRest() {
  const api = JSON.parse(readFileSync(openapiPath, 'utf8'));
  const defs = localRefs(api.components.schemas);
  // The root names every schema, so each becomes an exported type.
  const schema = markAnyValue(
    {
      title: 'RestBody',
      description: `Any body of the hub's REST API (${api.info.title} ${api.info.version}, OpenAPI ${api.openapi}).`,
      anyOf: Object.keys(defs).map((name) => ({ $ref: `#/$defs/${name}` })),
      $defs: defs,
    },
    true,
  );
  return compile(schema, 'RestBody', {
    ...OPTIONS,
    bannerComment: '/* Generated from docs/openapi.json by scripts/gen-types.mjs (npm run gen:types). Do not edit. */',
  });
}

const outputs = [
  { path: resolve(here, '../src/protocol.gen.ts'), source: 'docs/protocol.schema.json', text: await generateProtocol() },
  { path: resolve(here, '../src/rest.gen.ts'), source: 'docs/openapi.json', text: await generateRest() },
];

if (process.argv.includes('--check')) {
  let stale = false;
  for (const { path, source, text } of outputs) {
    let committed = '';
    try {
      committed = readFileSync(path, 'utf8');
    } catch {
      // compared below as empty
    }
    const name = `src/${basename(path)}`;
    if (committed !== text) {
      console.error(`${name} is out of date with ${source}: run \`npm run gen:types\` and commit the result`);
      stale = true;
    } else {
      console.log(`${name} matches ${source}`);
    }
  }
  if (stale) process.exit(1);
} else {
  for (const { path, text } of outputs) {
    writeFileSync(path, text);
    console.log(`wrote ${path}`);
  }
}
