// Stops the browser tests before they start, with one line saying what to
// install or build, when the hub binary or Chromium is missing (the tests
// never skip quietly).
import { existsSync } from 'node:fs';
import { chromiumPath, hubBin } from './harness.mjs';

if (!existsSync(hubBin)) {
  console.error(`eva-hub binary not found at ${hubBin}: run \`cargo build\` in the repository root, or set EVA_HUB_BIN`);
  process.exit(1);
}
if (!existsSync(chromiumPath)) {
  console.error(`Chromium not found at ${chromiumPath}: apt-get install chromium (or set CHROMIUM to its path)`);
  process.exit(1);
}
