// Opens pages of the Temporal Web UI in headless Chromium (Debian's) and
// reports what a person sees there. Driven by the Go tests in this
// directory; not a test on its own.
//
//   node ui.mjs '<json>'   with {"chromium": path, "pages": [{"url", "click", "expect": [text…], "screenshot", "timeoutMs"}]}
//
// "click" (optional) is the visible text of a tab or link to click first.
//
// For each page it waits (polling the DOM, with a deadline) until every expected
// text is on screen or the timeout passes, screenshots the page, and prints
// one JSON line: {"url", "found": [...], "missing": [...], "text"}.
// It exits 0 when the page checks ran, whatever they found; the Go test
// judges. Chromium is closed on every path.
import puppeteer from 'puppeteer-core';

// visibleText is the text of the page and of each of its frames.
async function visibleText(page) {
  const texts = await Promise.all(page.frames().map(
    (f) => f.evaluate(() => document.body?.innerText ?? '').catch(() => ''),
  ));
  return texts.join('\n');
}

const cfg = JSON.parse(process.argv[2]);
const browser = await puppeteer.launch({
  executablePath: cfg.chromium,
  headless: true,
  // Root in CI containers: Chromium's sandbox needs user namespaces.
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
let failed = false;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1600, height: 1400 });
  for (const p of cfg.pages) {
    await page.goto(p.url, { waitUntil: 'domcontentloaded' });
    const deadline = Date.now() + (p.timeoutMs ?? 30000);
    if (p.click) {
      // A tab or link, found by its visible text as a person would.
      const el = await page.waitForSelector(`::-p-text(${p.click})`, { timeout: p.timeoutMs ?? 30000 });
      await el.click();
    }
    // Poll (as require.Eventually does) until every text shows or time is
    // up. All frames count: the UI renders Markdown (a workflow's summary
    // and details) in sandboxed iframes.
    let missing = p.expect;
    for (;;) {
      const text = await visibleText(page);
      missing = p.expect.filter((e) => !text.includes(e));
      if (missing.length === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (p.screenshot) await page.screenshot({ path: p.screenshot, fullPage: true });
    const text = await visibleText(page);
    console.log(JSON.stringify({ url: p.url, found: p.expect.filter((e) => !missing.includes(e)), missing, text }));
  }
} catch (err) {
  console.error(String(err?.stack ?? err));
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
