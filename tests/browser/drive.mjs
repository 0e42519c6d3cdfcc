// Drive Debian's headless Chromium with playwright-core: open each page URL
// given on the command line in its own browser context, wait until the page
// says it is done (window.result.done), and print one JSON object on stdout:
//
//   {"ok": true, "browser": "<version>",
//    "pages": [{"url": ..., "origin": ..., "result": {...} | null,
//               "error": "<message>" | null, "console": [...]}]}
//
// Usage:
//   node drive.mjs [--chromium PATH] [--timeout-ms N] URL [URL ...]
//
// Every step has a bounded timeout, the whole run has a hard deadline, and
// the browser is always closed (killed if closing hangs).  Exit status: 0
// when every page reported done, 1 when some page did not, 2 when the
// browser could not be driven at all (the JSON then has "ok": false).
// No browser is ever downloaded: playwright-core only drives the
// executable it is given.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
let chromiumPath = '/usr/bin/chromium';
let pageTimeout = 15000;
const urls = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--chromium') chromiumPath = argv[++i];
  else if (argv[i] === '--timeout-ms') pageTimeout = Number(argv[++i]);
  else urls.push(argv[i]);
}
if (urls.length === 0 || !(pageTimeout > 0)) {
  process.stderr.write('usage: node drive.mjs [--chromium PATH] ' +
                       '[--timeout-ms N] URL [URL ...]\n');
  process.exit(64);
}

function out(obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

// Hard deadline for the whole run, whatever hangs.  process.exit() makes
// playwright-core kill the browser it launched (its exit handler).
const hardMs = 20000 + urls.length * (pageTimeout + 5000);
const hard = setTimeout(() => {
  out({ ok: false, error: `drive.mjs: hard deadline ${hardMs} ms passed` }, 2);
}, hardMs);
hard.unref();

async function visit(browser, url) {
  const rec = { url, origin: new URL(url).origin, result: null,
                error: null, console: [] };
  // A fresh context per page: no shared sockets, cache or storage.
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  ctx.setDefaultTimeout(pageTimeout);
  ctx.setDefaultNavigationTimeout(pageTimeout);
  let page = null;
  try {
    page = await ctx.newPage();
    page.on('console', (m) => rec.console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => rec.console.push(`pageerror: ${e.message}`));
    await page.goto(url, { waitUntil: 'load', timeout: pageTimeout });
    await page.waitForFunction(() => window.result && window.result.done,
                               null, { timeout: pageTimeout, polling: 50 });
    rec.result = await page.evaluate(() => window.result);
  } catch (e) {
    rec.error = String((e && e.message) || e).split('\n')[0];
    if (page) {
      // Whatever the page had recorded so far, for the report.
      rec.result = await Promise.race([
        page.evaluate(() => window.result ?? null).catch(() => null),
        new Promise((r) => setTimeout(() => r(null), 2000))]);
    }
  } finally {
    await Promise.race([ctx.close().catch(() => {}),
                        new Promise((r) => setTimeout(r, 5000))]);
  }
  return rec;
}

async function main() {
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    return [{ ok: false, error: 'cannot load playwright-core (run npm ci ' +
              'in tests/browser): ' + e.message }, 2];
  }
  if (!fs.existsSync(chromiumPath))
    return [{ ok: false, error: `no Chromium at ${chromiumPath}` }, 2];

  // A fresh profile every run: playwright-core refuses --user-data-dir in
  // launch() and makes its own playwright_chromiumdev_profile-* under
  // os.tmpdir(), so point TMPDIR at a new folder of ours and remove it all
  // at the end (also whatever Chromium leaves in /tmp-like places there).
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  process.env.TMPDIR = profile;
  let browser = null;
  const pages = [];
  try {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      timeout: 30000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
             '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync',
             '--ignore-certificate-errors'],
      env: { ...process.env, HOME: profile, TMPDIR: profile },
    });
    for (const url of urls)
      pages.push(await visit(browser, url));
    const allDone = pages.every((p) => p.error === null);
    return [{ ok: true, browser: browser.version(), pages }, allDone ? 0 : 1];
  } catch (e) {
    return [{ ok: false, error: String((e && e.message) || e), pages }, 2];
  } finally {
    if (browser)
      await Promise.race([browser.close().catch(() => {}),
                          new Promise((r) => setTimeout(r, 5000))]);
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  }
}

const [obj, code] = await main();
out(obj, code);
