// Fails the test run with one clear line when there is no hub binary to
// test against (the tests never skip quietly).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bin = process.env.EVA_HUB_BIN || fileURLToPath(new URL('../../../target/debug/eva-hub', import.meta.url));
if (!existsSync(bin)) {
  console.error(`eva-hub binary not found at ${bin}: run \`cargo build\` in the repository root, or set EVA_HUB_BIN`);
  process.exit(1);
}
