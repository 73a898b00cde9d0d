// What SelfCommunity's web client does, from a page on its own origin: chunks of 204800 bytes by
// XMLHttpRequest with FormData (`upload_id` from the second chunk on, written before the file part
// `image`), `Content-Range` and `Authorization` headers; completion with the MD5 as multipart form;
// then the Media by GET. The tests call these functions through page.evaluate.
'use strict';

function xhr(method, url, body, headers) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open(method, url);
    for (const [k, v] of Object.entries(headers || {})) x.setRequestHeader(k, v);
    x.onload = () => {
      let json = null;
      try { json = JSON.parse(x.responseText); } catch { /* not JSON */ }
      resolve({ status: x.status, text: x.responseText, json });
    };
    // What a page sees of a CORS refusal: a network error, status 0, nothing readable.
    x.onerror = () => reject(new Error(`network error on ${method} ${url} (status ${x.status})`));
    x.send(body);
  });
}

async function officialUpload({ base64, name, mime, api, token, chunkSize = 204800 }) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const file = new File([bytes], name, { type: mime });
  const auth = { Authorization: `Bearer ${token}` };
  const spark = new SparkMD5.ArrayBuffer();
  const ranges = [];
  let uploadId = null;
  let offset = 0;
  while (offset < file.size) {
    const end = Math.min(offset + chunkSize, file.size);
    const blob = file.slice(offset, end);
    const form = new FormData();
    if (uploadId) form.append('upload_id', uploadId);
    form.append('image', blob, name);
    const range = `bytes ${offset}-${end - 1}/${file.size}`;
    ranges.push(range);
    const r = await xhr('POST', `${api}/api/v2/media/upload/chunk/`, form, { ...auth, 'Content-Range': range });
    if (r.status !== 201) throw new Error(`chunk ${range}: HTTP ${r.status} ${r.text}`);
    spark.append(await blob.arrayBuffer());
    uploadId = r.json.upload_id;
    offset = r.json.offset;
  }
  const md5 = spark.end();
  const form = new FormData();
  form.append('upload_id', uploadId);
  form.append('md5', md5);
  const done = await xhr('POST', `${api}/api/v2/media/upload/complete/`, form, auth);
  if (done.status !== 201) throw new Error(`complete: HTTP ${done.status} ${done.text}`);
  const got = await xhr('GET', `${api}/api/v2/media/${done.json.id}/`, null, auth);
  return { md5, ranges, uploadId, completed: done.json, got: got.json, gotStatus: got.status };
}

// An <img> needs no CORS; resolves with its natural size once decoded.
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve({ width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => reject(new Error(`image did not load: ${url}`));
    img.src = url;
    document.getElementById('images').append(img);
  });
}

// Reading a file's bytes by fetch does need CORS (/files/ locally, the bucket's rule on AWS). Not from
// the HTTP cache: the <img> load before it stored an answer without CORS headers, and moto, unlike S3
// and the local server, does not mark such answers `Vary: Origin`, so Chromium could reuse it here.
async function fetchMd5(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  const spark = new SparkMD5.ArrayBuffer();
  spark.append(await r.arrayBuffer());
  return spark.end();
}

// Any API call with a token, as a page would make it.
async function apiGet(api, path, token) {
  const r = await xhr('GET', `${api}${path}`, null, { Authorization: `Bearer ${token}` });
  return { status: r.status, json: r.json };
}
