//! Image thumbnails: a rendition at most `MAX_SIDE` pixels on its long side, and the image's average
//! colour (a placeholder clients paint while the image loads). Pure CPU work on bytes in memory; the
//! caller runs it off the async threads and stores the result (`crate::thumbnailer`).
//!
//! Decoding is bounded: a small file can claim an enormous canvas (a decompression bomb), so the
//! decoder refuses dimensions and allocations beyond fixed limits before allocating anything.

use std::io::Cursor;

use image::{DynamicImage, GenericImageView, ImageFormat, ImageReader};

/// Long side of a thumbnail, in pixels.
pub const MAX_SIDE: u32 = 360;
/// Largest canvas decoded, per side.
pub const MAX_DECODE_SIDE: u32 = 12_000;
/// Largest single allocation the decoder may make (a 6000x5000 RGBA image fits).
pub const MAX_DECODE_ALLOC: u64 = 128 * 1024 * 1024;

/// A rendered thumbnail: JPEG bytes, its size and the average colour of the image (`#rrggbb`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub color: String,
}

pub const MIME: &str = "image/jpeg";

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("not an image format thumbnails are made of")]
    Unsupported,
    #[error("the image is beyond the decoding limits: {0}")]
    TooBig(String),
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("the thumbnail could not be encoded: {0}")]
    Encode(String),
}

/// Decodes `bytes` (JPEG, PNG, GIF: its first frame, WebP) and renders the thumbnail.
pub fn render(bytes: &[u8]) -> Result<Rendered, ThumbnailError> {
    let image = decode(bytes)?;
    let color = average_color(&image);
    let (w, h) = image.dimensions();
    let (tw, th) = fit(w, h, MAX_SIDE);
    let small = if (tw, th) == (w, h) {
        image
    } else {
        image.resize_exact(tw, th, image::imageops::FilterType::Triangle)
    };
    // JPEG has no alpha: transparent pixels become white, like the page most clients show them on.
    let rgb = flatten_on_white(&small);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 82)
        .encode_image(&rgb)
        .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
    Ok(Rendered {
        jpeg,
        width: tw,
        height: th,
        color,
    })
}

fn decode(bytes: &[u8]) -> Result<DynamicImage, ThumbnailError> {
    let format = image::guess_format(bytes).map_err(|_| ThumbnailError::Unsupported)?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP
    ) {
        return Err(ThumbnailError::Unsupported);
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| classify(e, ThumbnailError::Decode))?;
    // The whole canvas must fit the allocation limit too (decoders differ in what they count):
    // the per-side limits alone would allow 576 MB of RGBA.
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if u64::from(w) * u64::from(h) * 4 > MAX_DECODE_ALLOC {
        return Err(ThumbnailError::TooBig(format!("{w}x{h} pixels")));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    image::ImageDecoder::set_limits(&mut decoder, limits)
        .map_err(|e| classify(e, ThumbnailError::Decode))?;
    DynamicImage::from_decoder(decoder).map_err(|e| classify(e, ThumbnailError::Decode))
}

fn classify(e: image::ImageError, other: fn(String) -> ThumbnailError) -> ThumbnailError {
    match e {
        image::ImageError::Limits(l) => ThumbnailError::TooBig(l.to_string()),
        image::ImageError::Unsupported(_) => ThumbnailError::Unsupported,
        e => other(e.to_string()),
    }
}

/// The largest size within `max` x `max` with the image's aspect ratio, never larger than the image.
pub fn fit(w: u32, h: u32, max: u32) -> (u32, u32) {
    if w <= max && h <= max {
        return (w.max(1), h.max(1));
    }
    let (w64, h64, m) = (u64::from(w), u64::from(h), u64::from(max));
    let scaled = |long: u64, short: u64| ((short * m + long / 2) / long).max(1) as u32;
    if w >= h {
        (max, scaled(w64, h64))
    } else {
        (scaled(h64, w64), max)
    }
}

/// The mean of every pixel's colour, as `#rrggbb` (transparent pixels weigh nothing).
pub fn average_color(image: &DynamicImage) -> String {
    let rgba = image.to_rgba8();
    let (mut r, mut g, mut b, mut weight) = (0u64, 0u64, 0u64, 0u64);
    for p in rgba.pixels() {
        let a = u64::from(p[3]);
        r += u64::from(p[0]) * a;
        g += u64::from(p[1]) * a;
        b += u64::from(p[2]) * a;
        weight += a;
    }
    if weight == 0 {
        return "#ffffff".into();
    }
    let avg = |c: u64| (c + weight / 2) / weight;
    format!("#{:02x}{:02x}{:02x}", avg(r), avg(g), avg(b))
}

fn flatten_on_white(image: &DynamicImage) -> image::RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let a = u32::from(p[3]);
        let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png_of(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn fits_the_long_side() {
        assert_eq!(fit(1200, 800, 360), (360, 240));
        assert_eq!(fit(800, 1200, 360), (240, 360));
        assert_eq!(fit(100, 50, 360), (100, 50));
        assert_eq!(fit(10_000, 1, 360), (360, 1));
        assert_eq!(fit(360, 360, 360), (360, 360));
    }

    #[test]
    fn solid_image_gives_its_colour_and_a_scaled_jpeg() {
        let img = RgbImage::from_pixel(1200, 800, Rgb([0x33, 0x66, 0xcc]));
        let t = render(&png_of(DynamicImage::ImageRgb8(img))).unwrap();
        assert_eq!((t.width, t.height, t.color.as_str()), (360, 240, "#3366cc"));
        let back = image::load_from_memory(&t.jpeg).unwrap();
        assert_eq!(back.dimensions(), (360, 240));
        let px = back.to_rgb8().get_pixel(180, 120).0;
        for (got, want) in px.iter().zip([0x33u8, 0x66, 0xcc]) {
            assert!(got.abs_diff(want) <= 3, "{px:?}");
        }
    }

    #[test]
    fn average_ignores_transparent_pixels() {
        let mut img = RgbaImage::from_pixel(4, 2, Rgba([0, 0, 0, 0]));
        for x in 0..4 {
            img.put_pixel(x, 0, Rgba([0xff, 0, 0, 0xff]));
        }
        assert_eq!(average_color(&DynamicImage::ImageRgba8(img)), "#ff0000");
    }

    /// A PNG whose header claims `w` x `h` pixels, with an empty image data chunk behind it.
    fn claimed_png(w: u32, h: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend_from_slice(data);
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            png.extend_from_slice(&c);
            png.extend_from_slice(&crc32fast::hash(&c).to_be_bytes());
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[]);
        chunk(b"IEND", &[]);
        png
    }

    #[test]
    fn decompression_bomb_is_refused() {
        // Beyond the per-side limit: refused on reading the header.
        let e = render(&claimed_png(100_000, 100_000)).unwrap_err();
        assert!(matches!(e, ThumbnailError::TooBig(_)), "{e}");
        // Within the per-side limit but not the allocation limit: refused before allocating.
        let e = render(&claimed_png(10_000, 10_000)).unwrap_err();
        assert!(matches!(e, ThumbnailError::TooBig(_)), "{e}");
        // Within both, but the pixels are missing: an ordinary decoding error, no panic.
        let e = render(&claimed_png(100, 100)).unwrap_err();
        assert!(matches!(e, ThumbnailError::Decode(_)), "{e}");
    }

    #[test]
    fn not_an_image_is_unsupported() {
        assert!(matches!(
            render(b"%PDF-1.7 hello").unwrap_err(),
            ThumbnailError::Unsupported
        ));
    }
}
