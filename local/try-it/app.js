// The try-it page: uploads files through the media API exactly as SelfCommunity's web client does
// (docs/API.md): 204800-byte chunks POSTed as multipart/form-data with `upload_id` (from the second chunk
// on) written before the file part `image`, a `Content-Range: bytes START-END/TOTAL` header and the
// bearer token; then `upload/complete/` with the MD5 of the whole file.
//
// Resuming needs no extra endpoint. After each accepted chunk the page remembers the upload id and offset
// in localStorage under the API base and the file's name, size and lastModified. Choosing the same file
// again sends the chunk it believes comes next; if the server stands elsewhere it answers 400 with its
// `offset`, and the page goes on from there. The MD5 is fed the bytes the server has accepted, in order,
// re-reading from the file whatever it has not seen (after a reload, the part sent before).
'use strict';

(() => {
  const CHUNK_BYTES = 204800;
  // How many times one chunk is re-sent while another request holds the upload (409), as the CLI does.
  const CONFLICT_RETRIES = 8;
  const STORE_PREFIX = 'media-try-it:upload:';
  const config = JSON.parse(document.getElementById('try-it-config').textContent || '{}');

  const $ = (id) => document.getElementById(id);
  const apiInput = $('api');
  const tokenInput = $('token');
  const typeSelect = $('type');

  // ---- settings -------------------------------------------------------------------------------------

  const store = {
    get(area, key) { try { return window[area].getItem(key); } catch { return null; } },
    set(area, key, value) { try { window[area].setItem(key, value); } catch { /* storage off */ } },
    remove(area, key) { try { window[area].removeItem(key); } catch { /* storage off */ } },
  };

  apiInput.value = store.get('localStorage', 'media-try-it:api') || location.origin;
  // The token stays for this tab only (it survives a reload, not the browser).
  tokenInput.value = store.get('sessionStorage', 'media-try-it:token') || config.dev_token || '';
  $('token-note').hidden = !(config.dev_token && tokenInput.value === config.dev_token);
  apiInput.addEventListener('change', () => {
    store.set('localStorage', 'media-try-it:api', apiBase());
    showRemembered();
  });
  tokenInput.addEventListener('change', () => {
    store.set('sessionStorage', 'media-try-it:token', tokenInput.value.trim());
    $('token-note').hidden = tokenInput.value !== config.dev_token;
  });

  function apiBase() {
    return apiInput.value.trim().replace(/\/+$/, '') || location.origin;
  }

  // ---- remembered uploads ---------------------------------------------------------------------------

  function storeKey(api, file) {
    return STORE_PREFIX + JSON.stringify([api, file.name, file.size, file.lastModified]);
  }

  function remembered() {
    const out = [];
    let n = 0;
    try { n = localStorage.length; } catch { return out; }
    for (let i = 0; i < n; i++) {
      const key = localStorage.key(i);
      if (!key || !key.startsWith(STORE_PREFIX)) continue;
      try {
        const [api, name, size, lastModified] = JSON.parse(key.slice(STORE_PREFIX.length));
        const saved = JSON.parse(localStorage.getItem(key));
        out.push({ key, api, name, size, lastModified, saved });
      } catch { /* not ours */ }
    }
    return out;
  }

  function showRemembered() {
    const list = $('remembered-list');
    list.replaceChildren();
    const active = new Set([...uploads].filter((u) => u.running).map((u) => u.key));
    const entries = remembered().filter((e) => e.api === apiBase() && !active.has(e.key));
    for (const e of entries) {
      const li = document.createElement('li');
      li.dataset.name = e.name;
      const expired = e.saved.expires && Date.parse(e.saved.expires) < Date.now();
      li.textContent = `${e.name} (${formatBytes(e.size)}): ${formatBytes(e.saved.offset)} sent` +
        (expired ? ', expired' : `, until ${new Date(e.saved.expires).toLocaleString()}`) + ' ';
      const forget = document.createElement('button');
      forget.type = 'button';
      forget.textContent = 'Forget';
      forget.addEventListener('click', () => { store.remove('localStorage', e.key); showRemembered(); });
      li.append(forget);
      list.append(li);
    }
    $('remembered').hidden = entries.length === 0;
  }

  // ---- talking to the API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super(apiMessage(status, body));
      this.status = status;
      this.body = body;
    }
  }
  class Interrupted extends Error {}

  // The API's own words: every error body is `{"errors":[{"code","message"}]}` or the field form.
  function apiMessage(status, body) {
    const errors = body && Array.isArray(body.errors) ? body.errors : [];
    const parts = errors.map((e) => {
      if (e.field) {
        const msgs = (e.messages || []).map((m) => m.message).join('; ');
        return `${e.field}: ${msgs}`;
      }
      return e.code ? `${e.message} (${e.code})` : e.message;
    }).filter(Boolean);
    return `HTTP ${status}: ${parts.length ? parts.join('\n') : JSON.stringify(body)}`;
  }

  // One request by XHR (which reports upload progress, unlike fetch). Resolves with status and JSON body
  // whatever the status; rejects only when no answer could be read.
  function request(xhrHolder, method, path, form, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhrHolder.xhr = xhr;
      const url = apiBase() + path;
      xhr.open(method, url);
      const token = tokenInput.value.trim();
      if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
      for (const [k, v] of Object.entries(headers || {})) xhr.setRequestHeader(k, v);
      if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total);
      xhr.onload = () => {
        let body = null;
        try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch {
          body = { errors: [{ message: `not JSON: ${xhr.responseText.slice(0, 200)}` }] };
        }
        resolve({ status: xhr.status, body });
      };
      xhr.onerror = () => reject(new Error(
        `could not reach ${url}: the server is down, or it does not allow this page's origin ` +
        `(${location.origin}) by CORS; see the browser console`));
      xhr.onabort = () => reject(new Interrupted('paused'));
      xhr.send(form);
    });
  }

  // ---- one upload -----------------------------------------------------------------------------------

  const uploads = new Set();

  class Upload {
    constructor(file) {
      this.file = file;
      this.api = apiBase();
      this.key = storeKey(this.api, file);
      this.uploadId = null;
      this.offset = 0;
      this.md5 = new SparkMD5.ArrayBuffer();
      this.hashed = 0;
      this.running = false;
      this.paused = false;
      this.holder = { xhr: null };
      this.card = this.render();
      uploads.add(this);
    }

    render() {
      const card = $('upload-template').content.firstElementChild.cloneNode(true);
      card.dataset.name = this.file.name;
      card.querySelector('.name').textContent = this.file.name;
      card.querySelector('.size').textContent = formatBytes(this.file.size);
      card.querySelector('.toggle').addEventListener('click', () => this.toggle());
      $('uploads').prepend(card);
      return card;
    }

    part(cls) { return this.card.querySelector(cls); }

    setState(state, status) {
      this.card.dataset.state = state;
      if (status !== undefined) this.part('.status').textContent = status;
      const toggle = this.part('.toggle');
      toggle.hidden = state === 'done';
      toggle.textContent = state === 'uploading' ? 'Pause' : state === 'error' ? 'Retry' : 'Resume';
      toggle.disabled = state === 'completing';
    }

    showError(message) {
      const el = this.part('.error');
      el.textContent = message;
      el.hidden = !message;
    }

    save(expires) {
      store.set('localStorage', this.key, JSON.stringify({
        upload_id: this.uploadId, offset: this.offset, expires: expires || this.expires || null,
      }));
      if (expires) this.expires = expires;
    }

    forget() {
      store.remove('localStorage', this.key);
    }

    toggle() {
      if (this.running) {
        this.paused = true;
        if (this.holder.xhr) this.holder.xhr.abort();
      } else {
        this.run();
      }
    }

    // Starts or resumes: from the remembered upload if there is one.
    start() {
      const saved = JSON.parse(store.get('localStorage', this.key) || 'null');
      if (saved && saved.upload_id) {
        this.uploadId = saved.upload_id;
        this.offset = saved.offset || 0;
        this.expires = saved.expires;
        this.resumedFrom = this.offset;
      }
      this.run();
    }

    async run() {
      this.running = true;
      this.paused = false;
      this.showError('');
      this.rate = new RateMeter();
      this.setState('uploading', this.uploadId ? `resuming upload ${this.uploadId}` : 'starting');
      showRemembered();
      try {
        await this.sendChunks();
        await this.complete();
      } catch (e) {
        if (e instanceof Interrupted || this.paused) {
          this.setState('paused', `paused at ${formatBytes(this.offset)}`);
        } else {
          this.showError(e.message);
          this.setState('error', e instanceof ApiError ? 'stopped by the server\'s answer:' : 'stopped:');
        }
      } finally {
        this.running = false;
        this.holder.xhr = null;
        this.showProgress(this.offset);
      }
    }

    async sendChunks() {
      const size = this.file.size;
      let first = true; // the first request of a run probes a remembered upload
      let conflicts = 0;
      while (this.offset < size) {
        if (this.paused) throw new Interrupted('paused');
        const start = this.offset;
        const end = Math.min(start + CHUNK_BYTES, size);
        const blob = this.file.slice(start, end);
        const form = new FormData();
        // As the official client writes them: `upload_id` first, then the file part `image`.
        if (this.uploadId) form.append('upload_id', this.uploadId);
        form.append('image', blob, this.file.name);
        const { status, body } = await request(this.holder, 'POST', '/api/v2/media/upload/chunk/', form,
          { 'Content-Range': `bytes ${start}-${end - 1}/${size}` },
          // Progress counts the chunk's bytes, not the multipart framing around them.
          (loaded, total) => this.showProgress(start + Math.min(end - start, loaded * (end - start) / (total || 1))));
        const wasFirst = first;
        first = false;
        if (status === 201 && body && typeof body.offset === 'number') {
          conflicts = 0;
          this.uploadId = body.upload_id;
          await this.hashTo(body.offset);
          this.offset = body.offset;
          this.save(body.expires);
          this.part('.status').textContent =
            `upload ${this.uploadId}: chunk ${Math.ceil(this.offset / CHUNK_BYTES)} of ${Math.ceil(size / CHUNK_BYTES)}` +
            (this.resumedFrom ? `, resumed at byte ${this.resumedFrom}` : '');
          this.card.dataset.uploadId = this.uploadId;
        } else if (status === 400 && body && typeof body.offset === 'number' && this.uploadId) {
          // The server stands elsewhere (a chunk whose answer was lost, or an interrupted one): go there.
          this.offset = body.offset;
          if (wasFirst) this.resumedFrom = body.offset;
          this.save();
        } else if (wasFirst && this.uploadId && [404, 410, 400].includes(status)) {
          // The remembered upload is gone (expired, completed elsewhere or failed): start over.
          this.showError(`${apiMessage(status, body)}\nstarting this file over`);
          this.forget();
          this.uploadId = null;
          this.resumedFrom = 0;
          this.offset = 0;
          first = false;
        } else if (status === 409 && conflicts < CONFLICT_RETRIES) {
          // Another request (perhaps our own interrupted one) still holds the upload: wait, then re-send.
          conflicts += 1;
          await sleep(500 * conflicts);
        } else {
          throw new ApiError(status, body);
        }
        this.showProgress(this.offset);
      }
    }

    // Feeds the MD5 the file's bytes up to `target`, reading whatever it has not seen yet.
    async hashTo(target) {
      if (target < this.hashed) {
        this.md5.reset();
        this.hashed = 0;
      }
      while (this.hashed < target) {
        const end = Math.min(this.hashed + 4 * 1024 * 1024, target);
        this.md5.append(await this.file.slice(this.hashed, end).arrayBuffer());
        this.hashed = end;
      }
    }

    async complete() {
      this.setState('completing', 'completing: the server checks the MD5');
      await this.hashTo(this.file.size);
      const md5 = this.md5.end();
      this.md5 = new SparkMD5.ArrayBuffer();
      this.hashed = 0;
      const form = new FormData();
      form.append('upload_id', this.uploadId);
      form.append('md5', md5);
      if (typeSelect.value) form.append('type', typeSelect.value);
      const { status, body } = await request(this.holder, 'POST', '/api/v2/media/upload/complete/', form);
      if (status !== 201 && status !== 200) {
        // A wrong MD5 fails the upload on the server; anything else may be retried as it is.
        if (status === 400 || status === 404 || status === 410) this.forget();
        throw new ApiError(status, body);
      }
      this.forget();
      this.card.dataset.md5 = md5;
      this.card.dataset.mediaId = String(body.id);
      this.setState('done', `done: media ${body.id}, MD5 ${md5}` +
        (this.resumedFrom ? `, resumed at byte ${this.resumedFrom}` : ''));
      this.showMedia(body);
      showRemembered();
    }

    showMedia(media) {
      this.part('.result').hidden = false;
      this.part('.json').textContent = JSON.stringify(media, null, 2);
      const link = this.part('.link');
      const href = media.image || media.url;
      if (href && /^https?:\/\//i.test(href)) {
        link.href = href;
        link.textContent = media.image ? 'the image' : 'the document';
      }
      const thumb = media.image_thumbnail;
      if (thumb && thumb.url) {
        const box = this.part('.thumb');
        // The placeholder colour fills the thumbnail's box until the image arrives, as a feed would.
        box.style.backgroundColor = thumb.color || '';
        box.style.aspectRatio = `${thumb.width} / ${thumb.height}`;
        box.hidden = false;
        const img = this.part('.thumb-img');
        img.width = thumb.width;
        img.height = thumb.height;
        img.onload = () => img.classList.add('loaded');
        img.src = thumb.url;
        this.part('.swatch-row').hidden = !thumb.color;
        this.part('.swatch').style.backgroundColor = thumb.color || '';
        this.part('.color').textContent = `placeholder ${thumb.color}`;
      } else if (media.type === 'image' || media.type === 'eimage') {
        // Deferred thumbnails (AWS) arrive a moment after completion: ask again for a while.
        this.pollThumbnail(media.id, 10);
      }
    }

    async pollThumbnail(id, tries) {
      this.part('.status').textContent += '; thumbnail pending';
      for (let i = 0; i < tries; i++) {
        await sleep(2000);
        const { status, body } = await request({}, 'GET', `/api/v2/media/${id}/`, null).catch(() => ({}));
        if (status === 200 && body.image_thumbnail) {
          this.part('.status').textContent = this.part('.status').textContent.replace('; thumbnail pending', '');
          this.showMedia(body);
          return;
        }
      }
    }

    showProgress(done) {
      const size = this.file.size;
      this.part('progress').value = size ? done / size : 1;
      this.card.dataset.offset = String(this.offset);
      this.part('.bytes').textContent = `${formatBytes(done)} of ${formatBytes(size)}`;
      if (!this.running) {
        this.part('.rate').textContent = '';
        this.part('.eta').textContent = '';
        return;
      }
      const rate = this.rate.add(done);
      this.part('.rate').textContent = rate ? `${formatBytes(rate)}/s` : '';
      this.part('.eta').textContent = rate ? `ETA ${formatDuration((size - done) / rate)}` : '';
    }
  }

  // Bytes per second over the last few seconds, so that a pause or a slow chunk shows soon.
  class RateMeter {
    constructor() { this.samples = []; }
    add(done) {
      const now = performance.now();
      this.samples.push([now, done]);
      while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
      const [t0, b0] = this.samples[0];
      return now - t0 > 200 && done > b0 ? (done - b0) / ((now - t0) / 1000) : 0;
    }
  }

  // ---- helpers --------------------------------------------------------------------------------------

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

  function formatBytes(n) {
    if (!Number.isFinite(n)) return '';
    const units = ['B', 'KiB', 'MiB', 'GiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function formatDuration(secs) {
    if (!Number.isFinite(secs)) return '';
    const s = Math.max(0, Math.round(secs));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  // ---- picking and dropping files -------------------------------------------------------------------

  function add(files) {
    for (const file of files) {
      if (!file.size) continue;
      const existing = [...uploads].find((u) => u.key === storeKey(apiBase(), file) && u.card.dataset.state !== 'done');
      if (existing) {
        if (!existing.running) existing.run();
        continue;
      }
      new Upload(file).start();
    }
  }

  $('files').addEventListener('change', (e) => {
    add(e.target.files);
    e.target.value = '';
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    add(e.dataTransfer.files);
  });

  showRemembered();
  document.body.dataset.ready = '1';
})();
