// The try-it page (media-local's `/`) in real Chromium: an upload with progress, interrupted after two
// chunks by a page reload, resumed by choosing the same file again, completed; then pause/resume and an
// error worded by the API. On the AWS backend the page is served by an embedded server and targets the
// AWS-backed one through its API base URL field: a second origin, as a deployed stack would be.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  ARTIFACTS, backends, CHUNK, fetchBytes, launchChromium, md5, testPng, sleep, startMediaLocal, tempFile,
  worrying,
} from '../lib/harness.mjs';

// Slow enough that a chunk takes about half a second: progress, rate and ETA are visible, and the page
// can be reloaded between chunks. (CDP network emulation; the requests still go through CORS as usual,
// which intercepting them with page.route would not guarantee.)
const UPLOAD_BYTES_PER_SEC = 400 * 1024;

for (const backend of backends()) {
  describe(`the try-it page, ${backend} backend`, { timeout: 240_000 }, () => {
    let pageServer; // serves the page
    let apiServer; // answers the API calls (the same server on the local backend)
    let browser;

    before(async () => {
      pageServer = await startMediaLocal({ name: `try-it-${backend}-page` });
      apiServer = backend === 'local'
        ? pageServer
        : await startMediaLocal({ name: `try-it-${backend}-api`, backend });
      browser = await launchChromium();
    });

    after(async () => {
      await browser?.close();
      if (apiServer !== pageServer) await apiServer?.stop();
      await pageServer?.stop();
    });

    async function openPage() {
      const page = await browser.context.newPage();
      const cdp = await browser.context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: UPLOAD_BYTES_PER_SEC,
      });
      const chunkRanges = [];
      page.on('request', (r) => {
        if (r.method() === 'POST' && r.url().includes('/upload/chunk/')) chunkRanges.push(r.headers()['content-range']);
      });
      const consoleErrors = [];
      page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
      await page.goto(`${pageServer.base}/`);
      await page.waitForSelector('body[data-ready="1"]');
      if (apiServer !== pageServer) {
        await page.fill('#api', apiServer.base);
        await page.dispatchEvent('#api', 'change');
      }
      return { page, chunkRanges, consoleErrors };
    }

    const card = (page, name) => page.locator(`li.upload[data-name="${name}"]`);

    test('upload with progress, reload after two chunks, resume, complete', async () => {
      const png = testPng(600, 400); // ~720 KB: four chunks
      const total = Math.ceil(png.length / CHUNK);
      assert.ok(total >= 4, `${total} chunks`);
      const file = tempFile('photo.png', png);
      const { page, chunkRanges, consoleErrors } = await openPage();

      // The server runs with the development secret: the token is there already.
      assert.match(await page.inputValue('#token'), /^ey[\w-]+\.[\w-]+\.[\w-]+$/);
      assert.equal(await page.isVisible('#token-note'), true);

      await page.setInputFiles('#files', file);
      const c = card(page, 'photo.png');
      await c.waitFor();
      await page.waitForFunction(() => Number(document.querySelector('li.upload')?.dataset.offset) >= 2 * 204800);
      // Mid-upload: the bar has moved, rate and ETA are shown.
      const progress = await c.locator('progress').evaluate((p) => p.value);
      assert.ok(progress > 0.5 && progress < 1, `progress ${progress}`);
      assert.match(await c.locator('.rate').textContent(), /(KiB|MiB)\/s$/);
      assert.match(await c.locator('.eta').textContent(), /^ETA \d+:\d\d$/);
      // (The third chunk may have landed by now on a busy machine.)
      assert.match(await c.locator('.status').textContent(), /chunk [23] of 4/);
      await page.screenshot({ path: path.join(ARTIFACTS, `try-it-${backend}-progress.png`), fullPage: true });

      // Interrupt: reload while the third chunk is on its way.
      await page.reload();
      await page.waitForSelector('body[data-ready="1"]');
      chunkRanges.length = 0;
      const remembered = page.locator('#remembered-list li[data-name="photo.png"]');
      await remembered.waitFor();
      const rememberedText = await remembered.textContent();
      const sent = Number(/^photo\.png \([^)]*\): ([\d.]+) KiB sent/.exec(rememberedText)?.[1]) * 1024;
      assert.ok(sent === 2 * CHUNK || sent === 3 * CHUNK, rememberedText);
      assert.equal(await page.inputValue('#api'), apiServer.base, 'the API base survives the reload');
      await page.screenshot({ path: path.join(ARTIFACTS, `try-it-${backend}-reloaded.png`), fullPage: true });

      // Choosing the same file again resumes where the page left off.
      await page.setInputFiles('#files', file);
      await page.waitForSelector('li.upload[data-name="photo.png"][data-state="done"]', { timeout: 60_000 });
      const after = chunkRanges;
      assert.ok(after.length >= 1, 'chunk requests after the reload');
      const end = Math.min(sent + CHUNK, png.length) - 1;
      assert.equal(after[0], `bytes ${sent}-${end}/${png.length}`, 'resumed at the remembered offset');
      assert.ok(after.length <= total - 2, `resumed, not restarted: ${after}`);
      const done = card(page, 'photo.png');
      assert.match(await done.locator('.status').textContent(), new RegExp(`resumed at byte ${sent}`));

      // The page's MD5 (spark-md5, fed across the reload) is the file's, and so is what the server serves.
      assert.equal(await done.getAttribute('data-md5'), md5(png));
      const media = JSON.parse(await done.locator('.json').textContent());
      assert.equal(media.type, 'image');
      assert.equal(media.size, png.length);
      assert.equal(media.image_width, 600);
      assert.equal(md5(await fetchBytes(media.image)), md5(png));
      assert.equal(await done.locator('a.link').getAttribute('href'), media.image);

      // The thumbnail shows, on its placeholder colour.
      const thumb = media.image_thumbnail;
      assert.ok(thumb?.url, JSON.stringify(media));
      await page.waitForFunction(() => document.querySelector('li.upload .thumb-img')?.naturalWidth > 0);
      const bg = await done.locator('.thumb').evaluate((e) => getComputedStyle(e).backgroundColor);
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(thumb.color.slice(i, i + 2), 16));
      assert.equal(bg, `rgb(${r}, ${g}, ${b})`);
      assert.equal(await done.locator('.color').textContent(), `placeholder ${thumb.color}`);
      assert.equal(await page.isVisible('#remembered'), false, 'nothing left to resume');

      await page.screenshot({ path: path.join(ARTIFACTS, `try-it-${backend}.png`), fullPage: true });
      assert.deepEqual(consoleErrors.filter((m) => /CORS|Refused|blocked/.test(m)), []);
      await page.close();
    });

    test('pause and resume without a reload', async () => {
      const png = testPng(500, 300); // ~450 KB: three chunks
      const file = tempFile('paused.png', png);
      const { page } = await openPage();
      await page.setInputFiles('#files', file);
      const c = card(page, 'paused.png');
      await page.waitForFunction(() => Number(document.querySelector('li.upload[data-name="paused.png"]')?.dataset.offset) >= 204800);
      await c.locator('button.toggle').click();
      await page.waitForSelector('li.upload[data-name="paused.png"][data-state="paused"]');
      assert.equal(await c.locator('button.toggle').textContent(), 'Resume');
      const offset = Number(await c.getAttribute('data-offset'));
      await sleep(1500);
      assert.equal(Number(await c.getAttribute('data-offset')), offset, 'nothing is sent while paused');
      await c.locator('button.toggle').click();
      await page.waitForSelector('li.upload[data-name="paused.png"][data-state="done"]', { timeout: 60_000 });
      assert.equal(await c.getAttribute('data-md5'), md5(png));
      await page.close();
    });

    test('a dropped file uploads too', async () => {
      const { page } = await openPage();
      // A one-chunk JPEG made by the browser's canvas, dropped on the drop zone.
      const dataTransfer = await page.evaluateHandle(async () => {
        const c = document.createElement('canvas');
        c.width = 320;
        c.height = 200;
        const g = c.getContext('2d');
        g.fillStyle = '#c0392b';
        g.fillRect(0, 0, 320, 200);
        const blob = await new Promise((r) => c.toBlob(r, 'image/jpeg', 0.9));
        const dt = new DataTransfer();
        dt.items.add(new File([blob], 'dropped.jpg', { type: 'image/jpeg' }));
        return dt;
      });
      await page.dispatchEvent('#drop', 'drop', { dataTransfer });
      await page.waitForSelector('li.upload[data-name="dropped.jpg"][data-state="done"]', { timeout: 60_000 });
      const media = JSON.parse(await card(page, 'dropped.jpg').locator('.json').textContent());
      assert.equal(media.image_mimetype, 'image/jpeg');
      assert.deepEqual([media.image_width, media.image_height], [320, 200]);
      // The placeholder colour is the image's average: red.
      const [r, g, b] = [1, 3, 5].map((i) => parseInt(media.image_thumbnail.color.slice(i, i + 2), 16));
      assert.ok(Math.abs(r - 0xc0) < 12 && Math.abs(g - 0x39) < 12 && Math.abs(b - 0x2b) < 12, media.image_thumbnail.color);
      await page.close();
    });

    test('errors are shown as the API words them', async () => {
      const bytes = Buffer.from('this is not an image, nor a PDF\n'.repeat(100));
      // What the API answers for these bytes, asked directly.
      const form = new FormData();
      form.append('image', new Blob([bytes]), 'notes.txt');
      const r = await fetch(`${apiServer.base}/api/v2/media/upload/chunk/`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${apiServer.token}`, 'Content-Range': `bytes 0-${bytes.length - 1}/${bytes.length}` },
        body: form,
      });
      const answer = await r.json();
      assert.equal(r.status, 400);

      const { page } = await openPage();
      await page.setInputFiles('#files', tempFile('notes.txt', bytes));
      await page.waitForSelector('li.upload[data-name="notes.txt"][data-state="error"]');
      const shown = await card(page, 'notes.txt').locator('.error').textContent();
      assert.equal(shown, `HTTP 400: ${answer.errors[0].message} (${answer.errors[0].code})`);
      await page.screenshot({ path: path.join(ARTIFACTS, `try-it-${backend}-error.png`), fullPage: true });
      await page.close();

      assert.deepEqual(worrying(apiServer.log()), []);
    });
  });
}
