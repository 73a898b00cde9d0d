//! Files to upload: valid PNGs, GIFs, JPEGs and PDFs of chosen sizes, seeded so that a failing test fails
//! the same way again, and the MD5 that completion checks.

use std::io::Cursor;

use image::codecs::gif::{GifEncoder, Repeat};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageEncoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use md5::Digest;
use rand::{RngCore, SeedableRng};

/// The MD5 of `data` in lower-case hex, as clients send it to completion.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

/// `len` bytes of seeded noise.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A valid PNG of random RGB pixels, stored without compression, so its size is ~3*w*h bytes and
/// the sizes the tests choose (one chunk, several chunks, over a limit) hold.
pub fn png(width: u32, height: u32, seed: u64) -> Vec<u8> {
    let pixels = random_bytes((width * 3 * height) as usize, seed);
    let mut out = Vec::with_capacity(pixels.len() + (height as usize) * 8 + 1024);
    PngEncoder::new_with_quality(
        &mut out,
        CompressionType::Uncompressed,
        FilterType::NoFilter,
    )
    .write_image(&pixels, width, height, image::ExtendedColorType::Rgb8)
    .expect("encoding a PNG");
    out
}

/// A PNG of one colour (small: it compresses), for thumbnails and their average colour.
pub fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(width, height, Rgb(rgb)));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("encoding a PNG");
    out.into_inner()
}

/// A 40 x 20 GIF of two frames: red, then blue (a thumbnail must be of the first).
pub fn animated_gif() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        enc.set_repeat(Repeat::Infinite).expect("a looping GIF");
        for [r, g, b] in [[255, 0, 0], [0, 0, 255]] {
            let frame = RgbaImage::from_pixel(40, 20, Rgba([r, g, b, 255]));
            enc.encode_frame(image::Frame::new(frame))
                .expect("encoding a GIF frame");
        }
    }
    out
}

/// A PNG header claiming `width` x `height` pixels and nothing behind it (IHDR then IEND): a
/// decompression bomb when the claim is large. No encoder writes such a file, hence the hand-made
/// chunks.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IEND", &[])] {
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32fast::hash(&typed).to_be_bytes());
    }
    out
}

/// A JPEG whose frame header (with the dimensions) lies after `padding` bytes of APP segments, i.e.
/// beyond the first 204800-byte chunk when padding is large.
pub fn jpeg_with_late_header(width: u16, height: u16, padding: usize) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8];
    let mut left = padding;
    while left > 0 {
        let n = left.min(65000);
        v.extend_from_slice(&[0xff, 0xe1]);
        v.extend_from_slice(&((n + 2) as u16).to_be_bytes());
        v.extend(std::iter::repeat_n(0x41, n));
        left -= n;
    }
    v.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08]);
    v.extend_from_slice(&height.to_be_bytes());
    v.extend_from_slice(&width.to_be_bytes());
    v.extend_from_slice(&[0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    v.extend_from_slice(&[0xff, 0xd9]);
    v
}

/// A PDF of exactly `len` bytes (at least 21): the header sniffing recognises, seeded noise, `%%EOF`.
pub fn pdf(len: usize, seed: u64) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    v.extend(random_bytes(len.saturating_sub(v.len() + 6), seed));
    v.extend_from_slice(b"%%EOF\n");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pngs_decode_to_their_size_and_pixels() {
        let data = png(37, 11, 5);
        let img = image::load_from_memory(&data).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (37, 11));
        assert_eq!(img.into_raw(), random_bytes(37 * 3 * 11, 5));
        // Stored, not compressed: the tests' sizes follow from the dimensions.
        assert!(data.len() >= 37 * 3 * 11, "{}", data.len());
        assert!(data.len() < 37 * 3 * 11 + 200, "{}", data.len());
        let solid = image::load_from_memory(&solid_png(20, 10, [1, 2, 3])).unwrap();
        assert_eq!(solid.to_rgb8().get_pixel(19, 9).0, [1, 2, 3]);
    }

    #[test]
    fn claimed_pngs_have_valid_chunks_and_the_claimed_size() {
        let data = png_claiming(100_000, 100_000);
        assert_eq!(
            claimed_size(&data),
            (100_000, 100_000),
            "the header gives the claimed size"
        );
        // The image crate checks the CRCs: a valid header and a missing image, not a corrupt file.
        let err = image::load_from_memory(&data).unwrap_err().to_string();
        assert!(!err.to_lowercase().contains("crc"), "{err}");
        // Known CRC of the IEND chunk.
        assert!(data.ends_with(b"IEND\xae\x42\x60\x82"));
    }

    fn claimed_size(data: &[u8]) -> (u32, u32) {
        let w = u32::from_be_bytes(data[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(data[20..24].try_into().unwrap());
        (w, h)
    }

    #[test]
    fn pdfs_have_the_asked_length_and_depend_on_the_seed() {
        let a = pdf(5000, 1);
        assert_eq!(a.len(), 5000);
        assert!(a.starts_with(b"%PDF-") && a.ends_with(b"%%EOF\n"));
        assert_ne!(a, pdf(5000, 2));
        assert_eq!(a, pdf(5000, 1));
    }

    #[test]
    fn md5_of_the_empty_string() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn late_jpeg_header_is_past_the_padding() {
        let j = jpeg_with_late_header(640, 480, 300_000);
        let sof = j.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        assert!(sof > 300_000);
    }
}
