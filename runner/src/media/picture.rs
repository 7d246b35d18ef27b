//! Resizing a received image before the agent sees it (`[image]`): an image
//! whose longer side exceeds `max_dimension` is decoded (EXIF orientation
//! applied, so a phone photo is not sideways), scaled down with its aspect
//! kept, and encoded as WebP, JPEG or PNG. Smaller images are left alone.
//!
//! The input is untrusted: its declared size is checked against
//! `max_megapixels` before any pixel is decoded, and the decoder's own
//! allocation limit stays on. Pure functions on bytes; the caller does the
//! file I/O through `safe_fs` and runs this on the blocking pool.

use std::io::Cursor;

use ductor_daemon::config::{ImageConfig, ImageFormat};
use image::{DynamicImage, ImageDecoder as _, ImageReader, imageops::FilterType};

/// A resized image.
#[derive(Debug)]
pub struct Resized {
    /// The encoded image.
    pub bytes: Vec<u8>,
    /// Size before.
    pub original: (u32, u32),
    /// Size after.
    pub size: (u32, u32),
}

/// Why an image was left as it is.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PictureError {
    /// Not an image format we decode.
    #[error("its format is not one ductor resizes")]
    Unsupported,
    /// Larger than `max_megapixels`.
    #[error("it is {width}x{height}, more than the {limit} megapixels ductor decodes")]
    TooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit.
        limit: u32,
    },
    /// Decoding or encoding failed.
    #[error("it could not be converted: {0}")]
    Codec(String),
}

/// The size `(w, h)` scaled so its longer side is `max` (never enlarged).
pub fn fit(w: u32, h: u32, max: u32) -> (u32, u32) {
    let long = w.max(h);
    if max == 0 || long <= max {
        return (w, h);
    }
    let scale = f64::from(max) / f64::from(long);
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, max);
    (side(w), side(h))
}

/// Resizes `bytes` per `config`; `Ok(None)` when it is small enough already.
pub fn resize(bytes: &[u8], config: &ImageConfig) -> Result<Option<Resized>, PictureError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PictureError::Codec(e.to_string()))?;
    if reader.format().is_none() {
        return Err(PictureError::Unsupported);
    }
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Unsupported(_) => PictureError::Unsupported,
        other => PictureError::Codec(other.to_string()),
    })?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > u64::from(config.max_megapixels) * 1_000_000 {
        return Err(PictureError::TooLarge { width, height, limit: config.max_megapixels });
    }
    let orientation = decoder.orientation().ok();
    let quarter_turned = matches!(
        orientation,
        Some(
            image::metadata::Orientation::Rotate90
                | image::metadata::Orientation::Rotate270
                | image::metadata::Orientation::Rotate90FlipH
                | image::metadata::Orientation::Rotate270FlipH
        )
    );
    let (seen_w, seen_h) = if quarter_turned { (height, width) } else { (width, height) };
    let target = fit(seen_w, seen_h, config.max_dimension);
    if target == (seen_w, seen_h) {
        return Ok(None);
    }
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| PictureError::Codec(e.to_string()))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    let scaled = image.resize_exact(target.0, target.1, FilterType::Triangle);
    let bytes = encode(&scaled, config)?;
    Ok(Some(Resized { bytes, original: (seen_w, seen_h), size: target }))
}

fn encode(image: &DynamicImage, config: &ImageConfig) -> Result<Vec<u8>, PictureError> {
    let codec = |e: image::ImageError| PictureError::Codec(e.to_string());
    let mut out = Vec::new();
    match config.format {
        ImageFormat::Webp => {
            let rgba = image.to_rgba8();
            let encoder = webp::Encoder::from_rgba(rgba.as_raw(), rgba.width(), rgba.height());
            out = encoder.encode(f32::from(config.quality)).to_vec();
        }
        ImageFormat::Jpeg => {
            let rgb = image.to_rgb8();
            let encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, config.quality);
            rgb.write_with_encoder(encoder).map_err(codec)?;
        }
        ImageFormat::Png => {
            let encoder = image::codecs::png::PngEncoder::new(&mut out);
            image.write_with_encoder(encoder).map_err(codec)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn the_longer_side_is_fitted_and_the_aspect_kept() {
        assert_eq!(fit(4000, 3000, 2000), (2000, 1500));
        assert_eq!(fit(1000, 5000, 2000), (400, 2000));
        assert_eq!(fit(1999, 10, 2000), (1999, 10));
        assert_eq!(fit(3000, 1, 2000), (2000, 1));
        assert_eq!(fit(3000, 2000, 0), (3000, 2000));
    }

    #[test]
    fn a_large_image_becomes_a_smaller_webp_and_a_small_one_is_left_alone() {
        let config = ImageConfig { max_dimension: 256, ..ImageConfig::default() };
        let resized = resize(&png(600, 300), &config).unwrap().expect("resized");
        assert_eq!((resized.original, resized.size), ((600, 300), (256, 128)));
        assert_eq!(image::guess_format(&resized.bytes).unwrap(), image::ImageFormat::WebP);
        let back = image::load_from_memory(&resized.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (256, 128));
        assert!(resize(&png(200, 100), &config).unwrap().is_none());
    }

    #[test]
    fn jpeg_and_png_outputs_decode_to_the_fitted_size() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png] {
            let config = ImageConfig { max_dimension: 100, format, ..ImageConfig::default() };
            let resized = resize(&png(300, 150), &config).unwrap().unwrap();
            let back = image::load_from_memory(&resized.bytes).unwrap();
            assert_eq!((back.width(), back.height()), (100, 50), "{format:?}");
        }
    }

    #[test]
    fn a_bomb_is_refused_before_decoding_and_garbage_is_unsupported() {
        let config = ImageConfig { max_megapixels: 1, max_dimension: 64, ..ImageConfig::default() };
        let error = resize(&png(1500, 1000), &config).unwrap_err();
        assert!(matches!(error, PictureError::TooLarge { width: 1500, height: 1000, .. }));
        assert_eq!(resize(b"not an image at all", &config).unwrap_err(), PictureError::Unsupported);
        let mut cut = png(300, 300);
        cut.truncate(cut.len() / 2);
        assert!(matches!(resize(&cut, &config).unwrap_err(), PictureError::Codec(_)));
    }
}
