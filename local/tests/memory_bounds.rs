//! Memory is a contract: the real server binary, as a child process, is sent what an attacker would
//! send, and its peak resident memory (`VmHWM` in /proc) must stay under a stated bound.

mod common;
use common::process::ServerProcess;
use common::*;

use std::sync::Arc;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Uploads `data` as one chunk and completes it; returns the completion's status and body.
async fn upload_and_complete(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    data: Vec<u8>,
) -> (u16, serde_json::Value) {
    let md5 = md5_hex(&data);
    let total = data.len();
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(data).file_name("x.png"),
    );
    let r = client
        .post(format!("{base}/api/v2/media/upload/chunk/"))
        .bearer_auth(token)
        .header("content-range", format!("bytes 0-{}/{total}", total - 1))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (st, b) = json_of(r).await;
    assert_eq!(st, 201, "{b}");
    let id = b["upload_id"].as_str().unwrap().to_string();
    let r = client
        .post(format!("{base}/api/v2/media/upload/complete/"))
        .bearer_auth(token)
        .form(&[("upload_id", id), ("md5", md5)])
        .send()
        .await
        .unwrap();
    json_of(r).await
}

/// The images, uploaded and completed at once by many clients: a 16-bit RGBA PNG of 5792 x
/// 5792 (1.7 MB of file, 256 MiB of pixels) and a 35-byte GIF claiming a 5792 x 5792 screen (128
/// MiB of pixels, twice during compositing), with smaller images that do fit the budget among them.
/// Without a budget this took the server past 3 GB; with one its peak stays within the budget plus
/// what the server holds anyway. Every upload still becomes a media.
#[tokio::test]
async fn concurrent_hostile_images_stay_within_the_decoding_budget() {
    const BUDGET: u64 = 64 * MIB;
    let s = ServerProcess::start(&[
        ("MEDIA_DECODE_BUDGET_BYTES", &BUDGET.to_string()),
        ("MEDIA_SWEEP_SECS", "3600"),
    ])
    .await;
    let token = s.token("mallory");
    let client = reqwest::Client::new();
    let png16 = Arc::new(zeros_png_rgba16(5792, 5792));
    assert!(png16.len() < 2_000_000, "{}", png16.len());
    let mut files: Vec<Vec<u8>> = Vec::new();
    for _ in 0..4 {
        files.push(png16.to_vec());
        files.push(huge_screen_gif(5792, 5792));
        // 1200 x 1200 screens: 11 MB of pixels, 22 MB while compositing; two fit at once.
        files.push(huge_screen_gif(1200, 1200));
        files.push(zeros_png_rgba16(900, 900));
    }
    let before = s.memory("VmHWM");
    let tasks: Vec<_> = files
        .into_iter()
        .map(|data| {
            let (client, base, token) = (client.clone(), s.base.clone(), token.clone());
            tokio::spawn(async move { upload_and_complete(&client, &base, &token, data).await })
        })
        .collect();
    let mut thumbnails = 0;
    for t in tasks {
        let (st, media) = t.await.unwrap();
        assert_eq!(st, 201, "every upload becomes a media: {media}");
        if !media["image_thumbnail"].is_null() {
            thumbnails += 1;
        }
    }
    let peak = s.memory("VmHWM");
    eprintln!(
        "VmHWM before {} MiB, after {} MiB; {thumbnails} thumbnails",
        before / MIB,
        peak / MIB
    );
    assert!(thumbnails >= 1, "images that fit the budget get thumbnails");
    // The bound: the budget, plus the server's own memory before, plus the requests' bodies and
    // files in flight (16 x under 2 MB, each held a few times over), plus allocator slack.
    let bound = before + BUDGET + 96 * MIB;
    assert!(
        peak <= bound,
        "peak memory {} MiB is above the bound of {} MiB",
        peak / MIB,
        bound / MIB
    );
}

/// 200 connections without a token, each sending a 4 MiB chunk and then stalling: the server answers
/// 401 from the head and never reads the bodies, so its memory barely moves (reading them first took
/// 890 MB).
#[tokio::test]
async fn unauthenticated_bodies_are_not_read() {
    use tokio::io::AsyncWriteExt;
    let s = ServerProcess::start(&[("MEDIA_SWEEP_SECS", "3600")]).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let body = Arc::new(vec![b'x'; 4 << 20]);
    let before = s.memory("VmHWM");
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (addr, body) = (addr.clone(), body.clone());
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let head = format!(
                    "POST /api/v2/media/upload/chunk/ HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                // The server may answer and close at any point: write what it takes, then stall.
                let send = async {
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&body).await
                };
                let _ = tokio::time::timeout(Duration::from_secs(3), send).await;
                stream
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        held.push(t.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = s.memory("VmHWM");
    drop(held);
    eprintln!(
        "VmHWM before {} MiB, after 200 unauthenticated 4 MiB bodies {} MiB",
        before / MIB,
        peak / MIB
    );
    // Per connection: hyper's read buffer (64 KiB at most) and a task.
    assert!(
        peak <= before + 48 * MIB,
        "memory rose by {} MiB",
        (peak - before) / MIB
    );
}

/// A GIF of 35 bytes: a `w` x `h` logical screen holding one 1 x 1 frame.
fn huge_screen_gif(w: u16, h: u16) -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&w.to_le_bytes());
    g.extend_from_slice(&h.to_le_bytes());
    g.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    g.extend_from_slice(&[0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
    g.extend_from_slice(&[2, 2, 0x44, 0x01, 0, 0x3b]);
    g
}

/// A valid PNG of `w` x `h` transparent 16-bit RGBA pixels (8 bytes each), compressed by hand: one
/// fixed-Huffman deflate block of a zero literal and back-references of 258 bytes at distance 1,
/// 13 bits per 258 bytes of pixels.
fn zeros_png_rgba16(w: u32, h: u32) -> Vec<u8> {
    let raw_len = u64::from(h) * (1 + u64::from(w) * 8);
    let mut bits = BitWriter::default();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = fixed Huffman
    bits.code(0x30, 8); // literal 0
    let mut left = raw_len - 1;
    while left >= 258 {
        bits.code(0xc5, 8); // length 258 (symbol 285)
        bits.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0x30, 8);
    }
    bits.code(0, 7); // end of block
    let mut z = vec![0x78, 0x01];
    z.extend(bits.finish());
    // Adler-32 of zeros: a stays 1, b adds 1 per byte.
    let adler = (((raw_len % 65521) as u32) << 16) | 1;
    z.extend_from_slice(&adler.to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[16, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    out
}

/// Deflate's bit order: values least significant bit first, Huffman codes most significant first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn code(&mut self, code: u64, bits: u32) {
        let reversed = (0..bits).fold(0, |r, i| (r << 1) | ((code >> i) & 1));
        self.put(reversed, bits);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

fn crc32(data: &[u8]) -> u32 {
    // Table-driven: the 1.7 MB IDAT is hashed once per image.
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(0xffff_ffffu32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

#[test]
fn the_handmade_png_decodes_to_what_it_claims() {
    let png = zeros_png_rgba16(300, 200);
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (300, 200));
    assert_eq!(img.color(), image::ColorType::Rgba16);
    assert!(img.to_rgba16().pixels().all(|p| p.0 == [0; 4]));
}
