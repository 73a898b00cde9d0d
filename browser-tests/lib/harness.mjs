// What every browser test needs: media-local started as a user starts it (the built binary, configured
// by environment), a static server for pages on other origins, Chromium (Debian's, driven by
// playwright-core), test files, and a place for artifacts (server logs, screenshots).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');
/** Server logs and screenshots, kept after the run (target/ is git-ignored). */
export const ARTIFACTS = path.join(ROOT, 'target', 'browser-tests');
const BIN = process.env.MEDIA_LOCAL_BIN || path.join(ROOT, 'target', 'debug', 'media-local');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHUNK = 204800;

mkdirSync(ARTIFACTS, { recursive: true });

/** The backends to test: both unless MEDIA_BROWSER_BACKENDS narrows them (local, aws). */
export function backends() {
  return (process.env.MEDIA_BROWSER_BACKENDS || 'local,aws').split(',').map((s) => s.trim()).filter(Boolean);
}

/**
 * Starts `media-local serve` on a free loopback port with the development secret (the page then
 * carries a token) and the given settings. `backend: 'aws'` keeps the data in a fresh bucket and
 * table on the S3/DynamoDB server of AWS_ENDPOINT_URL (moto, from scripts/start-moto.sh).
 */
export async function startMediaLocal({ name, backend = 'local', env = {} }) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'media-browser-'));
  const childEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('MEDIA_')) childEnv[k] = v; // nothing from the caller's own media settings
  }
  Object.assign(childEnv, { MEDIA_LISTEN: '127.0.0.1:0', MEDIA_DATA_DIR: dataDir, RUST_LOG: 'info' });
  if (backend === 'aws') {
    if (!process.env.AWS_ENDPOINT_URL) {
      throw new Error('the aws backend needs an S3/DynamoDB server: run scripts/browser-tests.sh, '
        + 'or eval "$(scripts/start-moto.sh)" first (or MEDIA_BROWSER_BACKENDS=local)');
    }
    await assertS3LikeCors(process.env.AWS_ENDPOINT_URL);
    const unique = randomBytes(8).toString('hex');
    Object.assign(childEnv, {
      MEDIA_BACKEND: 'aws',
      MEDIA_BUCKET: `media-browser-${unique}`,
      MEDIA_TABLE: `media-browser-${unique}`,
      MEDIA_CREATE_RESOURCES: '1',
      MEDIA_S3_FORCE_PATH_STYLE: '1',
    });
  } else if (backend !== 'local') {
    throw new Error(`unknown backend ${backend}`);
  }
  Object.assign(childEnv, env);

  const logPath = path.join(ARTIFACTS, `${name}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(BIN, ['serve'], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (d) => { stdout += d; log.write(d); });
  child.stderr.on('data', (d) => log.write(d));
  const exited = once(child, 'exit');

  const deadline = Date.now() + 60_000;
  let base = null;
  while (!base) {
    const m = /listening on (http:\/\/[^\s]+)/.exec(stdout);
    if (m && /export TOKEN=/.test(stdout)) base = m[1];
    else if (child.exitCode !== null) {
      throw new Error(`media-local exited with ${child.exitCode}:\n${readFileSync(logPath, 'utf8')}`);
    } else if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`media-local did not start within a minute:\n${readFileSync(logPath, 'utf8')}`);
    } else await sleep(50);
  }
  const token = /export TOKEN=(\S+)/.exec(stdout)[1];
  return {
    base,
    token,
    backend,
    logPath,
    log: () => readFileSync(logPath, 'utf8'),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      log.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * moto's server answers every origin with Access-Control-Allow-Origin unless started with
 * MOTO_DISABLE_GLOBAL_CORS=1 (scripts/start-moto.sh does); S3 answers only by the bucket's rule, and
 * a test of refusals against the former would prove nothing.
 */
async function assertS3LikeCors(endpoint) {
  const r = await fetch(`${endpoint}/cors-probe-no-such-bucket/x`, { headers: { Origin: 'http://probe.invalid' } });
  if (r.headers.get('access-control-allow-origin')) {
    throw new Error(`the S3 server at ${endpoint} allows every origin (moto without MOTO_DISABLE_GLOBAL_CORS=1): `
      + 'restart it with scripts/stop-moto.sh && scripts/start-moto.sh');
  }
}

/** A static file server on a free loopback port: `files` maps paths to [content type, body]. */
export async function startStatic(files) {
  const server = createServer((req, res) => {
    const f = files[new URL(req.url, 'http://x').pathname];
    if (!f) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': f[0], 'cache-control': 'no-store' }).end(f[1]);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => server.close(r)),
  };
}

/** Debian's Chromium, headless, with a fresh profile and nothing talking to Google. */
export async function launchChromium() {
  const profile = mkdtempSync(path.join(tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1100, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export function md5(bytes) {
  return createHash('md5').update(bytes).digest('hex');
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reads a URL from node (no CORS involved) and returns its bytes. */
export async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}

/**
 * A valid PNG stored uncompressed, so about 3*w*h bytes whatever the picture and it spans chunks: a
 * diagonal gradient with a light disc, plus a little noise so that no two files are the same.
 */
export function testPng(width, height) {
  const row = width * 3 + 1;
  const raw = Buffer.alloc(row * height);
  const noise = randomBytes(width * height);
  const [cx, cy, r2] = [width * 0.62, height * 0.45, (Math.min(width, height) * 0.28) ** 2];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const t = (x / width + y / height) / 2;
      const inDisc = (x - cx) ** 2 + (y - cy) ** 2 < r2;
      const n = (noise[y * width + x] % 17) - 8;
      const px = inDisc
        ? [250, 236, 200]
        : [47 + t * 195, 111 + t * 58, 222 - t * 163];
      const o = y * row + 1 + x * 3;
      for (let i = 0; i < 3; i++) raw[o + i] = Math.max(0, Math.min(255, Math.round(px[i] + n)));
    }
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 0 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A real JPEG, encoded by the browser's own canvas (a gradient with some shapes). */
export async function canvasJpeg(page, width, height) {
  const bytes = await page.evaluate(([w, h]) => new Promise((resolve, reject) => {
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, w, h);
    grad.addColorStop(0, '#2f6fde');
    grad.addColorStop(1, '#f2a93b');
    g.fillStyle = grad;
    g.fillRect(0, 0, w, h);
    g.fillStyle = '#ffffff';
    g.beginPath();
    g.arc(w / 2, h / 2, Math.min(w, h) / 4, 0, Math.PI * 2);
    g.fill();
    c.toBlob((b) => (b ? b.arrayBuffer().then((a) => resolve(Array.from(new Uint8Array(a)))) : reject(new Error('no JPEG'))),
      'image/jpeg', 0.9);
  }), [width, height]);
  return Buffer.from(bytes);
}

/** Writes `bytes` to a temporary file named `name` (what a user picks in the file chooser). */
export function tempFile(name, bytes) {
  const dir = mkdtempSync(path.join(tmpdir(), 'media-files-'));
  const p = path.join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** The lines of a server log that would worry an operator. */
export function worrying(log) {
  return log.split('\n').filter((l) => /\b(ERROR|WARN)\b|panicked/.test(l));
}
