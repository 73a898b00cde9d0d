//! Photos as phones write them: real pixels (encoded by the `image` crate) with the metadata that
//! gives a person away put around them by hand, as cameras do: EXIF with a GPS position, the phone's
//! make and an orientation, XMP, comments, PNG text chunks. What must disappear is marked with
//! [`SECRETS`], so a test can look for it in the bytes served.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{ExtendedColorType, ImageDecoder, ImageEncoder, ImageReader};

/// Byte strings only the metadata holds; none may be found in a stripped file.
pub const SECRETS: [&[u8]; 4] = [
    b"SecretPhone",
    b"GPS at home",
    b"<x:xmpmeta",
    // The latitude 48/1 51/1 2958/100 as little-endian rationals.
    &[
        48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 142, 11, 0, 0, 100, 0, 0, 0,
    ],
];

/// Which of [`SECRETS`] `data` holds (empty for a clean file).
pub fn secrets_in(data: &[u8]) -> Vec<String> {
    SECRETS
        .iter()
        .filter(|s| data.windows(s.len()).any(|w| w == **s))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// EXIF as a phone writes it (TIFF, little-endian): IFD0 with Make, the orientation (when given)
/// and a pointer to a GPS IFD holding the latitude.
pub fn gps_exif(orientation: Option<u16>) -> Vec<u8> {
    fn entry(t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32) {
        t.extend(tag.to_le_bytes());
        t.extend(kind.to_le_bytes());
        t.extend(count.to_le_bytes());
        t.extend(value.to_le_bytes());
    }
    let ifd0_entries: u16 = if orientation.is_some() { 3 } else { 2 };
    let ifd0_len = 2 + 12 * u32::from(ifd0_entries) + 4;
    let make_at = 8 + ifd0_len;
    let make = b"SecretPhone\0";
    let gps_at = make_at + make.len() as u32;
    let gps_len = 2 + 12 * 3 + 4;
    let lat_at = gps_at + gps_len;
    let mut t = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes());
    t.extend(ifd0_entries.to_le_bytes());
    entry(&mut t, 0x010f, 2, make.len() as u32, make_at);
    if let Some(o) = orientation {
        entry(&mut t, 0x0112, 3, 1, u32::from(o));
    }
    entry(&mut t, 0x8825, 4, 1, gps_at);
    t.extend(0u32.to_le_bytes());
    t.extend(make);
    t.extend(3u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, u32::from(b'N')); // GPSLatitudeRef
    entry(&mut t, 0x0002, 5, 3, lat_at); // GPSLatitude
    entry(&mut t, 0x001b, 7, 11, 0); // GPSProcessingMethod (value elsewhere in real files)
    t.extend(0u32.to_le_bytes());
    t.extend(SECRETS[3]);
    t.extend(b"GPS at home");
    t
}

const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x='adobe:ns:meta/'>\
<exif:GPSLatitude>48,51.4N</exif:GPSLatitude></x:xmpmeta>";

/// Pixels that are not all alike, so a decoder's output shows any change.
fn gradient(width: u32, height: u32) -> Vec<u8> {
    (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| [(x * 4) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        })
        .collect()
}

/// A JPEG marker segment: `FF code`, the length, the payload.
pub fn jpeg_segment(code: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, code];
    s.extend(u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    s.extend(payload);
    s
}

/// A 64 x 48 JPEG as a phone stores it: JFIF, EXIF with GPS (and `orientation`), XMP, an ICC profile
/// (kept: it is no one's), a comment, and a trailer after the image (as Motion Photos append).
pub fn phone_jpeg(orientation: Option<u16>) -> Vec<u8> {
    let mut plain = Vec::new();
    JpegEncoder::new_with_quality(&mut plain, 90)
        .write_image(&gradient(64, 48), 64, 48, ExtendedColorType::Rgb8)
        .expect("encoding a JPEG");
    assert_eq!(&plain[2..4], &[0xFF, 0xE0], "the encoder starts with JFIF");
    let app0_end = 4 + usize::from(u16::from_be_bytes([plain[4], plain[5]]));
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend(gps_exif(orientation));
    let mut out = plain[..app0_end].to_vec();
    out.extend(jpeg_segment(0xE1, &exif));
    out.extend(jpeg_segment(0xE1, XMP));
    out.extend(jpeg_segment(0xE2, &icc_segment_payload()));
    out.extend(jpeg_segment(0xFE, b"GPS at home"));
    out.extend(&plain[app0_end..]);
    out.extend(b"MotionPhoto_Data SecretPhone");
    out
}

/// The APP2 payload of a (tiny, fake) ICC profile.
pub fn icc_segment_payload() -> Vec<u8> {
    let mut p = b"ICC_PROFILE\0\x01\x01".to_vec();
    p.extend(b"not a real profile, but one to keep");
    p
}

/// A PNG chunk: length, type, data, CRC.
pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut typed = kind.to_vec();
    typed.extend(data);
    let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    c.extend(&typed);
    c.extend(crc32fast::hash(&typed).to_be_bytes());
    c
}

/// A 40 x 30 PNG with gamma (kept), text, XMP, EXIF with GPS (and `orientation`) and a time.
pub fn phone_png(orientation: Option<u16>) -> Vec<u8> {
    let mut plain = Vec::new();
    PngEncoder::new(&mut plain)
        .write_image(&gradient(40, 30), 40, 30, ExtendedColorType::Rgb8)
        .expect("encoding a PNG");
    let ihdr_end = 8 + 25;
    assert_eq!(&plain[12..16], b"IHDR");
    let mut out = plain[..ihdr_end].to_vec();
    out.extend(png_chunk(b"gAMA", &45455u32.to_be_bytes()));
    out.extend(png_chunk(b"tEXt", b"Comment\0GPS at home"));
    let mut itxt = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    itxt.extend(&XMP[29..]);
    out.extend(png_chunk(b"iTXt", &itxt));
    out.extend(png_chunk(b"eXIf", &gps_exif(orientation)));
    out.extend(png_chunk(b"tIME", &[7, 234, 12, 2, 10, 0, 0]));
    out.extend(&plain[ihdr_end..]);
    out
}

/// A 40 x 30 lossless WebP in the extended format with EXIF (GPS and `orientation`) and XMP.
pub fn phone_webp(orientation: Option<u16>) -> Vec<u8> {
    let mut plain = Vec::new();
    WebPEncoder::new_lossless(&mut plain)
        .encode(&gradient(40, 30), 40, 30, ExtendedColorType::Rgb8)
        .expect("encoding a WebP");
    assert_eq!(&plain[12..16], b"VP8L");
    let mut vp8x = vec![0x08 | 0x04, 0, 0, 0];
    vp8x.extend(&39u32.to_le_bytes()[..3]);
    vp8x.extend(&29u32.to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(webp_chunk(b"VP8X", &vp8x));
    body.extend(&plain[12..]);
    body.extend(webp_chunk(b"EXIF", &gps_exif(orientation)));
    body.extend(webp_chunk(b"XMP ", &XMP[29..]));
    let mut out = b"RIFF".to_vec();
    out.extend(u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend(body);
    out
}

/// A RIFF chunk of a WebP: code, little-endian length, data, a pad byte to an even length.
pub fn webp_chunk(code: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = code.to_vec();
    c.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
    c.extend(data);
    if data.len() % 2 == 1 {
        c.push(0);
    }
    c
}

/// What a decoder makes of `data`: width, height, RGBA pixels, and the orientation it would apply.
pub fn decoded(data: &[u8]) -> (u32, u32, Vec<u8>, Orientation) {
    let mut decoder = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .expect("a known format")
        .into_decoder()
        .expect("a decodable image");
    let orientation = decoder.orientation().expect("an orientation");
    let image = image::DynamicImage::from_decoder(decoder).expect("decoded pixels");
    let rgba = image.to_rgba8();
    (rgba.width(), rgba.height(), rgba.into_raw(), orientation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_photos_decode_and_hold_their_secrets() {
        for (name, photo) in [
            ("jpeg", phone_jpeg(Some(6))),
            ("png", phone_png(Some(6))),
            ("webp", phone_webp(Some(6))),
        ] {
            let (w, h, _, o) = decoded(&photo);
            assert!(w >= 40 && h >= 30, "{name}");
            assert_eq!(o, Orientation::Rotate90, "{name}");
            assert_eq!(secrets_in(&photo).len(), SECRETS.len(), "{name}");
        }
    }
}
