//! QR codes of 2FA provisioning URIs, for authenticator apps to scan: SVG
//! (rendered by `qrcode`) and PNG (the module matrix drawn as 8-bit grey and
//! encoded by `png`, so the `image` crate is not needed).

use qrcode::{Color, EcLevel, QrCode};
use shared::platform::error::{Error, Result};

/// Pixels per module in the PNG, and the quiet zone around the code in
/// modules (the QR specification asks for four).
const PNG_SCALE: usize = 6;
const QUIET_ZONE: usize = 4;

/// The QR code of `text`, as SVG markup and as PNG bytes.
pub fn render(text: &str) -> Result<(String, Vec<u8>)> {
    // Medium error correction: survives a smudged screen, stays small.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).map_err(|e| Error::internal(format!("QR code: {e}")))?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(256, 256).quiet_zone(true).build();
    Ok((svg, png(&code)?))
}

fn png(code: &QrCode) -> Result<Vec<u8>> {
    let modules = code.width();
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (index % modules + QUIET_ZONE, index / modules + QUIET_ZONE);
        for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
            pixels[y * side + mx * PNG_SCALE..y * side + (mx + 1) * PNG_SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| Error::internal(format!("PNG header: {e}")))?;
    writer.write_image_data(&pixels).map_err(|e| Error::internal(format!("PNG data: {e}")))?;
    writer.finish().map_err(|e| Error::internal(format!("PNG end: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "otpauth://totp/Keel:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Keel";

    /// Decode the PNG with the `png` decoder and read the code back with an
    /// independent QR reader (`rqrr`).
    #[test]
    fn png_decodes_back_to_the_uri() {
        let (_, bytes) = render(URI).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let (w, h) = (info.width as usize, info.height as usize);
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the image");
        let (_, content) = grids[0].decode().unwrap();
        assert_eq!(content, URI);
    }

    #[test]
    fn svg_is_a_scalable_image_of_the_same_code() {
        let (svg, _) = render(URI).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("<path"), "modules are drawn");
    }
}
