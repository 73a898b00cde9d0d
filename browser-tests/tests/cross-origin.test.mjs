// A web app on another origin uploads through the API exactly as SelfCommunity's web client does, in
// real Chromium, on the embedded backend and on the AWS backend (S3 + DynamoDB on moto). The browser,
// not the test, decides whether CORS lets each request through.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  backends, canvasJpeg, fetchBytes, launchChromium, md5, testPng, ROOT, startMediaLocal, startStatic,
  worrying,
} from '../lib/harness.mjs';

const pages = path.join(ROOT, 'browser-tests', 'pages');
const files = {
  '/official-client.html': ['text/html; charset=utf-8', readFileSync(path.join(pages, 'official-client.html'))],
  '/official-client.js': ['text/javascript', readFileSync(path.join(pages, 'official-client.js'))],
  '/spark-md5.min.js': ['text/javascript', readFileSync(path.join(ROOT, 'local/try-it/vendor/spark-md5.min.js'))],
};

for (const backend of backends()) {
  describe(`a web app on another origin, ${backend} backend`, { timeout: 180_000 }, () => {
    let app; // the allowed web app's origin
    let stranger; // an origin the server does not list
    let server;
    let browser;

    before(async () => {
      app = await startStatic(files);
      stranger = await startStatic(files);
      server = await startMediaLocal({
        name: `cross-origin-${backend}`,
        backend,
        env: { MEDIA_CORS_ORIGINS: app.origin },
      });
      browser = await launchChromium();
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
      await app?.close();
      await stranger?.close();
    });

    async function openPage(origin) {
      const page = await browser.context.newPage();
      const console = [];
      page.on('console', (m) => console.push(m.text()));
      await page.goto(`${origin}/official-client.html`);
      return { page, console };
    }

    async function uploadAndCheck(page, bytes, name, mime, expectedChunks) {
      const r = await page.evaluate(officialUploadArgs => officialUpload(officialUploadArgs), {
        base64: bytes.toString('base64'), name, mime, api: server.base, token: server.token,
      });
      assert.equal(r.ranges.length, expectedChunks, `chunks: ${r.ranges}`);
      assert.equal(r.ranges[0], `bytes 0-${Math.min(204800, bytes.length) - 1}/${bytes.length}`);
      assert.equal(r.md5, md5(bytes), 'the page computed the MD5 with spark-md5');
      assert.equal(r.gotStatus, 200);
      assert.equal(r.got.id, r.completed.id);
      assert.equal(r.got.type, 'image');
      assert.equal(r.got.image_mimetype, mime);
      assert.equal(r.got.title, name);
      assert.equal(r.got.size, bytes.length);
      // The bytes the server serves are the file's.
      assert.equal(md5(await fetchBytes(r.got.image)), md5(bytes));

      // Image and thumbnail decode in <img> elements of the page.
      const img = await page.evaluate((u) => loadImage(u), r.got.image);
      assert.deepEqual(img, { width: r.got.image_width, height: r.got.image_height });
      const thumbnail = r.got.image_thumbnail;
      assert.ok(thumbnail?.url, `a thumbnail in ${JSON.stringify(r.got)}`);
      assert.match(thumbnail.color, /^#[0-9a-f]{6}$/);
      const thumb = await page.evaluate((u) => loadImage(u), thumbnail.url);
      assert.ok(thumb.width > 0 && thumb.height > 0, JSON.stringify(thumb));
      assert.deepEqual(thumb, { width: thumbnail.width, height: thumbnail.height });

      // Reading the file's bytes by fetch needs CORS on /files/ (local) or the bucket's rule (AWS).
      assert.equal(await page.evaluate((u) => fetchMd5(u), r.got.image), md5(bytes));
      return r;
    }

    test('a multi-chunk PNG and a one-chunk JPEG upload, complete, read back and display', async () => {
      const { page, console } = await openPage(app.origin);
      const png = testPng(600, 400); // ~720 KB: four chunks
      await uploadAndCheck(page, png, 'multi-chunk.png', 'image/png', Math.ceil(png.length / 204800));
      const jpeg = await canvasJpeg(page, 640, 480);
      assert.ok(jpeg.length < 204800, `the JPEG fits one chunk (${jpeg.length} bytes)`);
      await uploadAndCheck(page, jpeg, 'one-chunk.jpg', 'image/jpeg', 1);
      assert.deepEqual(console.filter((m) => /CORS|blocked/.test(m)), []);
      await page.close();
    });

    test('a page on an origin the server does not list is refused by the browser', async () => {
      const { page, console } = await openPage(stranger.origin);
      const png = testPng(64, 64);
      await assert.rejects(
        page.evaluate((a) => officialUpload(a), {
          base64: png.toString('base64'), name: 'x.png', mime: 'image/png', api: server.base, token: server.token,
        }),
        /network error on POST .*upload\/chunk/,
      );
      await assert.rejects(page.evaluate(([api, token]) => apiGet(api, '/api/v2/media/1/', token),
        [server.base, server.token]), /network error on GET/);
      // Chromium says why: the preflight's answer names no allowed origin.
      assert.ok(console.some((m) => /blocked by CORS policy/.test(m)), console.join('\n'));

      // The same page may still show images (no CORS for <img>), but not read a file's bytes.
      const { page: allowed } = await openPage(app.origin);
      const ok = await allowed.evaluate((a) => officialUpload(a), {
        base64: png.toString('base64'), name: 'x.png', mime: 'image/png', api: server.base, token: server.token,
      });
      await allowed.close();
      const img = await page.evaluate((u) => loadImage(u), ok.got.image);
      assert.equal(img.width, 64);
      await assert.rejects(page.evaluate((u) => fetchMd5(u), ok.got.image), /Failed to fetch/);

      // Nothing alarming in the server's log: a refused preflight is routine.
      assert.deepEqual(worrying(server.log()), []);
      await page.close();
    });
  });
}
