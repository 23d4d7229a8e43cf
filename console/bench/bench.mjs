// Console benchmark: one console tab watching 50 live sessions, each
// updating 10 times a second (the demo's transcript updates, plus its
// speech, slide and metrics changes), with one session open.
//
//   npm run bench                       # 5 minutes
//   npm run bench -- --minutes 1        # shorter
//   npm run bench -- --sessions 50 --rate 10
//   npm run bench -- --questions-every-ms 20000   # with audience questions
//
// It reports the long tasks Chromium saw (PerformanceObserver 'longtask',
// summed per 10-second window) and the tab's JS heap after a forced
// garbage collection every 30 s. Targets: long tasks under 200 ms per
// 10 s; a heap that stays flat. Results go to bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, signIn, startHub, until } from '../test/harness.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const minutes = arg('minutes', 5);
const sessions = arg('sessions', 50);
const rate = arg('rate', 10);
// The audience's questions add conversation lines (kept up to 500 per
// session): off by default, so the heap shows leaks, not a filling log.
const questionsEveryMs = arg('questions-every-ms', 0);
const here = dirname(fileURLToPath(import.meta.url));

const hub = await startHub({
  args: ['--demo', String(sessions), '--updates-per-s', String(rate), '--audience', '1', '--question-every-ms', String(questionsEveryMs), '--slide-ms', '5000'],
});
const browser = await launchBrowser();
try {
  const page = await browser.context.newPage();
  let frames = 0;
  page.on('websocket', (ws) => ws.on('framereceived', () => (frames += 1)));
  await signIn(page, hub.url);
  await until(async () => (await page.locator('#session-list a').count()) >= sessions, `${sessions} sessions in the list`, 30_000);
  await page.locator('#session-list a').first().click();
  await page.locator('#session-view').waitFor();
  await page.evaluate(() => {
    window.__long = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__long.push([performance.now(), e.duration]);
    }).observe({ type: 'longtask' });
  });
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Performance.enable');
  // Main-thread time spent in tasks and in script (seconds, cumulative).
  const busy = async () => {
    const { metrics } = await cdp.send('Performance.getMetrics');
    const get = (n) => metrics.find((m) => m.name === n)?.value ?? 0;
    return { task: get('TaskDuration'), script: get('ScriptDuration') };
  };
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { usedSize } = await cdp.send('Runtime.getHeapUsage');
    return usedSize;
  };
  // Warm up: every session joined and rendering.
  await new Promise((r) => setTimeout(r, 5000));

  const windows = [];
  const heaps = [];
  const start = Date.now();
  const end = start + minutes * 60_000;
  let nextHeap = start;
  while (Date.now() < end) {
    const f0 = frames;
    const b0 = await busy();
    const t0 = await page.evaluate(() => performance.now());
    await new Promise((r) => setTimeout(r, 10_000));
    const t1 = await page.evaluate(() => performance.now());
    const b1 = await busy();
    const long = await page.evaluate(([a, b]) => window.__long.filter(([t]) => t >= a && t < b).map(([, d]) => d), [t0, t1]);
    await page.evaluate((b) => (window.__long = window.__long.filter(([t]) => t >= b)), t1);
    windows.push({ at_s: Math.round((Date.now() - start) / 1000), frames_per_s: Math.round((frames - f0) / 10), long_tasks: long.length, long_ms: Math.round(long.reduce((a, b) => a + b, 0)), longest_ms: Math.round(Math.max(0, ...long)), main_thread_pct: Math.round(((b1.task - b0.task) / 10) * 100), script_pct: Math.round(((b1.script - b0.script) / 10) * 100), load_avg: Number(loadavg()[0].toFixed(1)) });
    if (Date.now() >= nextHeap) {
      heaps.push({ at_s: Math.round((Date.now() - start) / 1000), heap_bytes: await heap() });
      nextHeap += 30_000;
    }
    const w = windows.at(-1);
    console.log(`${w.at_s}s: ${w.frames_per_s} frames/s, main thread busy ${w.main_thread_pct}% (script ${w.script_pct}%), long tasks ${w.long_tasks} (${w.long_ms} ms, longest ${w.longest_ms} ms), load ${w.load_avg}, heap ${((heaps.at(-1)?.heap_bytes ?? 0) / 1048576).toFixed(1)} MiB`);
  }
  heaps.push({ at_s: Math.round((Date.now() - start) / 1000), heap_bytes: await heap() });

  const mib = (b) => (b / 1048576).toFixed(2);
  const longMs = windows.map((w) => w.long_ms);
  const first = heaps[0].heap_bytes;
  const last = heaps.at(-1).heap_bytes;
  const peak = Math.max(...heaps.map((h) => h.heap_bytes));
  const summary = {
    date: new Date().toISOString(),
    sessions,
    updates_per_s: rate,
    minutes,
    frames_per_s: Math.round(windows.reduce((a, w) => a + w.frames_per_s, 0) / windows.length),
    long_ms_per_10s: { max: Math.max(...longMs), mean: Math.round(longMs.reduce((a, b) => a + b, 0) / longMs.length), windows_over_200: longMs.filter((x) => x >= 200).length, windows: longMs.length },
    main_thread_pct_mean: Math.round(windows.reduce((a, w) => a + w.main_thread_pct, 0) / windows.length),
    load_avg_mean: Number((windows.reduce((a, w) => a + w.load_avg, 0) / windows.length).toFixed(1)),
    heap_mib: { first: Number(mib(first)), last: Number(mib(last)), peak: Number(mib(peak)), growth_pct: Number((((last - first) / first) * 100).toFixed(1)) },
    windows,
    heaps,
  };
  const dir = join(here, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `console-${summary.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(`
| sessions × updates/s | frames/s into the tab | main thread busy | long tasks per 10 s (max / mean; windows ≥ 200 ms) | JS heap after GC (first → last, peak) | load average |
|---|---|---|---|---|---|
| ${sessions} × ${rate} | ${summary.frames_per_s} | ${summary.main_thread_pct_mean}% | ${summary.long_ms_per_10s.max} ms / ${summary.long_ms_per_10s.mean} ms; ${summary.long_ms_per_10s.windows_over_200} of ${summary.long_ms_per_10s.windows} | ${mib(first)} → ${mib(last)} MiB (${summary.heap_mib.growth_pct >= 0 ? '+' : ''}${summary.heap_mib.growth_pct}%), peak ${mib(peak)} MiB over ${minutes} min | ${summary.load_avg_mean} |

${file}`);
} finally {
  await browser.close();
  await hub.stop();
}
