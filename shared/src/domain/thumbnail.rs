//! Image thumbnails: a rendition at most `MAX_SIDE` pixels on its long side, and the image's average
//! colour (a placeholder clients paint while the image loads). Pure CPU work on bytes in memory; the
//! caller runs it off the async threads, within the process's decoding budget, and stores the result
//! (`crate::thumbnailer`).
//!
//! Decoding is bounded: a small file can claim an enormous canvas (a decompression bomb), so an image
//! is first probed (its header only) for what decoding it will hold at its peak (`Probe::cost`,
//! counting the true bytes per pixel of the decoded layout, e.g. 8 for 16-bit RGBA), the caller
//! reserves that much of the budget, and the decoder then runs under an allocation limit of that
//! size (`ImageReader::decode`, the path on which `image` charges the output buffer to the limit and
//! hands the rest to the decoder). After decoding, nothing of the image's size is allocated again:
//! the average colour is summed over the decoded pixels in place and the thumbnail is sampled
//! straight from them.

use std::io::Cursor;

use image::{
    ColorType, DynamicImage, GenericImageView, ImageBuffer, ImageDecoder, ImageFormat, ImageReader,
    Pixel,
};

/// Long side of a thumbnail, in pixels.
pub const MAX_SIDE: u32 = 360;
/// Largest canvas decoded, per side (whatever the budget says).
pub const MAX_DECODE_SIDE: u32 = 12_000;
/// What rendering holds besides the decoded image: the thumbnail in its native and RGB layouts,
/// the JPEG encoder's buffers and the decoders' small tables and row buffers.
const RENDER_OVERHEAD: u64 = 4 * 1024 * 1024;

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
    #[error("no room in the decoding budget: {0}")]
    Busy(String),
    #[error("the image could not be decoded: {0}")]
    Decode(String),
    #[error("the thumbnail could not be encoded: {0}")]
    Encode(String),
}

/// What an image's header says about decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub color: ColorType,
    /// Size of the encoded file (some decoders copy it before decoding).
    pub input_len: u64,
}

impl Probe {
    /// The decoded image: width x height x the true bytes per pixel of the decoder's output.
    pub fn decoded_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * u64::from(self.color.bytes_per_pixel())
    }

    /// The most memory decoding and rendering this image may hold at once, in bytes: what the
    /// caller reserves from the budget and the decoder's allocation limit. Decoders hold more than
    /// their output, by format (read in image 0.25's codecs):
    /// - PNG writes rows straight into the output: 1x, plus row buffers.
    /// - GIF composites a frame smaller than its logical screen from a second buffer: 2x.
    /// - WebP (lossy) keeps YUV planes and, with alpha, a lossless-decoded alpha plane: up to 3x.
    /// - JPEG (zune-jpeg) copies the file and, for progressive images, keeps every DCT coefficient
    ///   as 16 bits per sample of each component: up to 4x (CMYK) of the RGB output. zune-jpeg
    ///   does not read `image`'s limits, so for JPEG this reservation is the only bound.
    pub fn cost(&self) -> u64 {
        let factor = match self.format {
            ImageFormat::Png => 1,
            ImageFormat::Gif => 2,
            ImageFormat::WebP => 3,
            _ => 4,
        };
        self.decoded_bytes()
            .saturating_mul(factor)
            .saturating_add(self.input_len)
            .saturating_add(RENDER_OVERHEAD)
    }
}

fn supported(bytes: &[u8]) -> Result<ImageFormat, ThumbnailError> {
    let format = image::guess_format(bytes).map_err(|_| ThumbnailError::Unsupported)?;
    match format {
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP => Ok(format),
        _ => Err(ThumbnailError::Unsupported),
    }
}

fn side_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits
}

/// Reads the header of `bytes` (JPEG, PNG, GIF, WebP): format, canvas and decoded pixel layout.
/// Allocates nothing of the image's size; canvases beyond `MAX_DECODE_SIDE` are refused here.
pub fn probe(bytes: &[u8]) -> Result<Probe, ThumbnailError> {
    let format = supported(bytes)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = side_limits();
    // Nothing the header parsers allocate comes near this; it stops one that would.
    limits.max_alloc = Some(64 * 1024 * 1024);
    reader.limits(limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| classify(e, ThumbnailError::Decode))?;
    let (width, height) = decoder.dimensions();
    Ok(Probe {
        format,
        width,
        height,
        color: decoder.color_type(),
        input_len: bytes.len() as u64,
    })
}

/// Decodes `bytes` (JPEG, PNG, GIF: its first frame, WebP) within `probe.cost()` bytes and renders
/// the thumbnail. The caller holds that much of the decoding budget while this runs.
pub fn render(bytes: &[u8], probe: &Probe) -> Result<Rendered, ThumbnailError> {
    let image = decode(bytes, probe)?;
    let color = average_color(&image);
    let (w, h) = image.dimensions();
    let (tw, th) = fit(w, h, MAX_SIDE);
    let small = if (tw, th) == (w, h) {
        image
    } else {
        // Area averaging straight from the decoded pixels into the small image: no intermediate
        // of the image's size (a filtered resize keeps a float copy of width x thumbnail height).
        let small = image.thumbnail_exact(tw, th);
        drop(image);
        small
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

fn decode(bytes: &[u8], probe: &Probe) -> Result<DynamicImage, ThumbnailError> {
    if supported(bytes)? != probe.format {
        return Err(ThumbnailError::Decode("not the probed image".into()));
    }
    let mut limits = side_limits();
    // `decode` charges the output buffer to this limit before allocating it and gives the rest
    // to the decoder for its own buffers (a decoder that reports a larger canvas than the probe
    // saw is stopped by the same limit).
    limits.max_alloc = Some(probe.cost());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), probe.format);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| classify(e, ThumbnailError::Decode))
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

/// The mean of every pixel's colour, as `#rrggbb` (transparent pixels weigh nothing). Summed over
/// the decoded pixels in their own layout: converting to RGBA8 first would copy the whole image.
pub fn average_color(image: &DynamicImage) -> String {
    let [r, g, b, weight] = match image {
        DynamicImage::ImageLuma8(i) => weighted_sums(i),
        DynamicImage::ImageLumaA8(i) => weighted_sums(i),
        DynamicImage::ImageRgb8(i) => weighted_sums(i),
        DynamicImage::ImageRgba8(i) => weighted_sums(i),
        DynamicImage::ImageLuma16(i) => weighted_sums(i),
        DynamicImage::ImageLumaA16(i) => weighted_sums(i),
        DynamicImage::ImageRgb16(i) => weighted_sums(i),
        DynamicImage::ImageRgba16(i) => weighted_sums(i),
        DynamicImage::ImageRgb32F(i) => weighted_sums(i),
        DynamicImage::ImageRgba32F(i) => weighted_sums(i),
        // A layout added to `image` later: per-pixel conversion, still without a copy.
        other => other.pixels().fold([0.0; 4], |mut acc, (_, _, p)| {
            add_weighted(&mut acc, p.0.map(|c| f64::from(c) / 255.0));
            acc
        }),
    };
    if weight <= 0.0 {
        return "#ffffff".into();
    }
    let avg = |c: f64| ((c / weight).clamp(0.0, 1.0) * 255.0).round() as u8;
    format!("#{:02x}{:02x}{:02x}", avg(r), avg(g), avg(b))
}

/// Sums of r*a, g*a, b*a and a over every pixel, each channel scaled to 0..=1.
fn weighted_sums<P>(image: &ImageBuffer<P, Vec<P::Subpixel>>) -> [f64; 4]
where
    P: Pixel,
    P::Subpixel: Unit,
{
    let mut acc = [0.0; 4];
    for p in image.pixels() {
        add_weighted(&mut acc, p.to_rgba().0.map(Unit::unit));
    }
    acc
}

/// A channel value scaled to 0..=1.
trait Unit {
    fn unit(self) -> f64;
}

impl Unit for u8 {
    fn unit(self) -> f64 {
        f64::from(self) / 255.0
    }
}

impl Unit for u16 {
    fn unit(self) -> f64 {
        f64::from(self) / 65535.0
    }
}

impl Unit for f32 {
    fn unit(self) -> f64 {
        f64::from(self)
    }
}

fn add_weighted(acc: &mut [f64; 4], [r, g, b, a]: [f64; 4]) {
    acc[0] += r * a;
    acc[1] += g * a;
    acc[2] += b * a;
    acc[3] += a;
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

    fn render_bytes(bytes: &[u8]) -> Result<Rendered, ThumbnailError> {
        render(bytes, &probe(bytes)?)
    }

    #[test]
    fn solid_image_gives_its_colour_and_a_scaled_jpeg() {
        let img = RgbImage::from_pixel(1200, 800, Rgb([0x33, 0x66, 0xcc]));
        let t = render_bytes(&png_of(DynamicImage::ImageRgb8(img))).unwrap();
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
        assert_eq!(
            average_color(&DynamicImage::ImageRgba8(img.clone())),
            "#ff0000"
        );
        // The same in 16 bits per channel: summed in its own layout, same answer.
        let wide = DynamicImage::ImageRgba8(img).to_rgba16();
        assert_eq!(average_color(&DynamicImage::ImageRgba16(wide)), "#ff0000");
        let half = RgbImage::from_fn(2, 1, |x, _| Rgb([if x == 0 { 0 } else { 0xff }; 3]));
        assert_eq!(average_color(&DynamicImage::ImageRgb8(half)), "#808080");
    }

    /// A PNG whose header claims `w` x `h` 8-bit RGB pixels, with an empty image data chunk.
    fn claimed_png(w: u32, h: u32) -> Vec<u8> {
        claimed_png_of(w, h, 8, 2)
    }

    /// The same with another bit depth and colour type (6: RGBA).
    fn claimed_png_of(w: u32, h: u32, depth: u8, color_type: u8) -> Vec<u8> {
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
        ihdr.extend_from_slice(&[depth, color_type, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[]);
        chunk(b"IEND", &[]);
        png
    }

    #[test]
    fn decompression_bomb_is_refused() {
        // Beyond the per-side limit: refused on reading the header.
        let e = probe(&claimed_png(100_000, 100_000)).unwrap_err();
        assert!(matches!(e, ThumbnailError::TooBig(_)), "{e}");
        // Within the per-side limit: the probe tells what decoding would take, nothing allocated.
        let p = probe(&claimed_png(10_000, 10_000)).unwrap();
        assert_eq!(p.decoded_bytes(), 300_000_000);
        assert!(p.cost() > crate::domain::Limits::default().decode_budget_bytes);
        // Small, but the pixels are missing: an ordinary decoding error, no panic.
        let e = render_bytes(&claimed_png(100, 100)).unwrap_err();
        assert!(matches!(e, ThumbnailError::Decode(_)), "{e}");
    }

    /// The images: 16-bit RGBA is 8 bytes a pixel, and a 35-byte GIF can claim a canvas
    /// of 5792 x 5792 that its decoder composites from a second buffer.
    #[test]
    fn cost_counts_true_bytes_per_pixel_and_the_decoders_buffers() {
        let p = probe(&claimed_png_of(5792, 5792, 16, 6)).unwrap();
        assert_eq!(p.color, ColorType::Rgba16);
        assert_eq!(p.decoded_bytes(), 5792 * 5792 * 8);
        assert!(p.cost() >= p.decoded_bytes());
        let gif = huge_screen_gif(5792, 5792);
        assert_eq!(gif.len(), 35);
        let p = probe(&gif).unwrap();
        assert_eq!(
            (p.format, p.width, p.height),
            (ImageFormat::Gif, 5792, 5792)
        );
        assert!(p.cost() >= 2 * 5792 * 5792 * 4);
    }

    /// The decoder runs under the probe's allowance: an image larger than its probe claimed (here
    /// a probe made smaller by hand) is stopped by the allocation limit, not decoded.
    #[test]
    fn decoding_honours_the_allocation_limit() {
        let gif = huge_screen_gif(2000, 2000);
        let honest = probe(&gif).unwrap();
        let t = render(&gif, &honest).unwrap();
        assert_eq!((t.width, t.height), (360, 360));
        let lying = Probe {
            width: 100,
            height: 100,
            ..honest
        };
        let e = render(&gif, &lying).unwrap_err();
        assert!(matches!(e, ThumbnailError::TooBig(_)), "{e}");
    }

    /// A GIF of 35 bytes: a `w` x `h` logical screen holding one 1 x 1 frame.
    pub(crate) fn huge_screen_gif(w: u16, h: u16) -> Vec<u8> {
        let mut g = b"GIF89a".to_vec();
        g.extend_from_slice(&w.to_le_bytes());
        g.extend_from_slice(&h.to_le_bytes());
        // Global colour table of 2 entries, background 0, no aspect ratio; black and white.
        g.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
        // Image descriptor: at 0,0, 1 x 1, no local table.
        g.extend_from_slice(&[0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
        // LZW, minimum code size 2: clear, index 0, end; then the block terminator and trailer.
        g.extend_from_slice(&[2, 2, 0x44, 0x01, 0, 0x3b]);
        g
    }

    #[test]
    fn not_an_image_is_unsupported() {
        assert!(matches!(
            render_bytes(b"%PDF-1.7 hello").unwrap_err(),
            ThumbnailError::Unsupported
        ));
    }
}
