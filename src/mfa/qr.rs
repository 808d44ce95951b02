//! QR codes of enrollment URIs: SVG, PNG and terminal output (cargo feature `qr`, on by default).
//!
//! The `qrcode` crate computes the module matrix; the renderers here are small and write from our
//! own copy of it, which is zeroized on drop. Every output encodes the secret, so each comes back
//! as a secret type. Best effort only: the `qrcode` crate's internal buffers are freed without
//! being wiped.

use super::error::MfaError;
use super::secret::SecretText;
use super::uri::OtpauthUri;
use crate::secret::SecretBytes;
use core::fmt;
use core::fmt::Write as _;
use zeroize::Zeroizing;

/// Light modules around the code, as the QR standard requires.
const QUIET_ZONE: usize = 4;
/// Largest PNG module size accepted, in pixels.
pub const MAX_MODULE_PIXELS: u32 = 32;

/// Which terminal background the rendering is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TerminalBackground {
    /// Light text on a dark background (most terminals): light modules are drawn as blocks.
    #[default]
    Dark,
    /// Dark text on a light background: dark modules are drawn as blocks.
    Light,
}

/// The module matrix of a QR code holding an enrollment URI.
pub struct EnrollmentQr {
    /// Modules per side, without the quiet zone.
    width: usize,
    /// Row-major, 1 for dark, 0 for light.
    dark: Zeroizing<Vec<u8>>,
}

impl OtpauthUri {
    /// The QR code of this URI, for the authenticator app to scan.
    pub fn qr(&self) -> Result<EnrollmentQr, MfaError> {
        let uri = self.to_uri();
        let code = qrcode::QrCode::with_error_correction_level(
            uri.expose_secret().as_bytes(),
            qrcode::EcLevel::M,
        )
        .map_err(|e| MfaError::Qr(e.to_string()))?;
        let width = code.width();
        let dark = Zeroizing::new(
            code.into_colors()
                .into_iter()
                .map(|c| u8::from(c == qrcode::Color::Dark))
                .collect(),
        );
        Ok(EnrollmentQr { width, dark })
    }
}

impl EnrollmentQr {
    /// Modules per side, without the quiet zone.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Whether the module at column `x`, row `y` of the padded symbol (quiet zone included) is dark.
    fn is_dark(&self, x: usize, y: usize) -> bool {
        let (Some(x), Some(y)) = (x.checked_sub(QUIET_ZONE), y.checked_sub(QUIET_ZONE)) else {
            return false;
        };
        x < self.width && y < self.width && self.dark.get(y * self.width + x) == Some(&1)
    }

    fn padded_width(&self) -> usize {
        self.width + 2 * QUIET_ZONE
    }

    /// An SVG image, one unit per module, scalable to any size.
    pub fn to_svg(&self) -> SecretText {
        let size = self.padded_width();
        let mut out = String::with_capacity(size * size * 2);
        let _ = write!(
            out,
            r##"<?xml version="1.0" encoding="UTF-8"?><svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 {size} {size}" shape-rendering="crispEdges"><rect width="{size}" height="{size}" fill="#fff"/><path fill="#000" d=""##
        );
        for y in 0..size {
            for x in 0..size {
                if self.is_dark(x, y) {
                    let _ = write!(out, "M{x} {y}h1v1h-1z");
                }
            }
        }
        out.push_str(r#""/></svg>"#);
        SecretText::new(out)
    }

    /// Unicode half blocks, two module rows per line, for printing to a terminal.
    pub fn to_terminal(&self, background: TerminalBackground) -> SecretText {
        let size = self.padded_width();
        let mut out = String::with_capacity(size * size * 2);
        let block = |dark: bool| match background {
            TerminalBackground::Dark => !dark,
            TerminalBackground::Light => dark,
        };
        for y in (0..size).step_by(2) {
            for x in 0..size {
                let top = block(self.is_dark(x, y));
                // A missing last row (odd size) is background, not a drawn block.
                let bottom = y + 1 < size && block(self.is_dark(x, y + 1));
                out.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            out.push('\n');
        }
        SecretText::new(out)
    }

    /// A greyscale PNG with `module_pixels` pixels per module (1 to 32; 8 suits most screens).
    pub fn to_png(&self, module_pixels: u32) -> Result<SecretBytes, MfaError> {
        if module_pixels == 0 || module_pixels > MAX_MODULE_PIXELS {
            return Err(MfaError::InvalidSetting {
                setting: "module_pixels",
                reason: format!("must be from 1 to {MAX_MODULE_PIXELS}, got `{module_pixels}`"),
            });
        }
        let scale = module_pixels as usize;
        let side = self.padded_width() * scale;
        let side_u32 = u32::try_from(side).map_err(|_| MfaError::Qr("image too large".into()))?;
        let mut pixels = Zeroizing::new(Vec::with_capacity(side * side));
        for y in 0..side {
            for x in 0..side {
                pixels.push(if self.is_dark(x / scale, y / scale) {
                    0u8
                } else {
                    255u8
                });
            }
        }
        let mut png_bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png_bytes, side_u32, side_u32);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let png_error = |e: png::EncodingError| MfaError::Qr(e.to_string());
            let mut writer = encoder.write_header().map_err(png_error)?;
            writer.write_image_data(&pixels).map_err(png_error)?;
            writer.finish().map_err(png_error)?;
        }
        Ok(SecretBytes::new(png_bytes))
    }
}

impl fmt::Debug for EnrollmentQr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnrollmentQr([REDACTED; {0}x{0} modules])", self.width)
    }
}
