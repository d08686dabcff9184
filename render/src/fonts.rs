//! The fonts reports are drawn with, compiled in.
//!
//! Three TrueType fonts, gzip-compressed in `render/fonts/` with their
//! licences: DejaVu Sans and DejaVu Sans Bold for Latin, Greek, Cyrillic
//! and symbols, and Droid Sans Fallback for CJK. They are inflated once per
//! process, the first time anything is rendered, and shared by everything
//! that draws text:
//!
//! - the chart layout (charts-rs measures labels with them: [`register_with_charts`]);
//! - the SVG renderer ([`database`]: the `usvg` font database the PNGs and
//!   the PDF's vector charts are drawn with). resvg drops, without a word,
//!   text whose font is not in its database, so every generic family and
//!   any family it does not know resolve to DejaVu Sans;
//! - the PDF's own text ([`Fonts::glyph`]: glyph lookups and advances).
//!
//! Nothing is read from the system's fonts: a report looks the same
//! wherever it is rendered.

use std::io::Read;
use std::sync::{Arc, OnceLock};

use resvg::usvg::fontdb::{Database, Source};

use crate::RenderError;

/// The family every chart and the PDF write with.
pub const SANS_FAMILY: &str = "DejaVu Sans";
/// The family of CJK text, which DejaVu Sans does not cover.
pub const FALLBACK_FAMILY: &str = "Droid Sans Fallback";

/// One of the compiled-in fonts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Face {
    /// DejaVu Sans.
    Sans,
    /// DejaVu Sans Bold.
    SansBold,
    /// Droid Sans Fallback (CJK).
    Fallback,
}

impl Face {
    /// Every font, in the order of [`Face::index`].
    pub const ALL: [Face; 3] = [Face::Sans, Face::SansBold, Face::Fallback];

    /// Position in [`Face::ALL`].
    pub fn index(self) -> usize {
        match self {
            Face::Sans => 0,
            Face::SansBold => 1,
            Face::Fallback => 2,
        }
    }
}

static GZ: [&[u8]; 3] =
    [include_bytes!("../fonts/DejaVuSans.ttf.gz"), include_bytes!("../fonts/DejaVuSans-Bold.ttf.gz"), include_bytes!("../fonts/DroidSansFallback.ttf.gz")];

/// A glyph of a font: its id, and its advance in ems.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Glyph {
    pub id: u16,
    pub advance: f32,
}

/// The inflated fonts.
pub struct Fonts {
    data: [&'static [u8]; 3],
    faces: [ttf_parser::Face<'static>; 3],
    /// The glyphs of ASCII characters (most of any report's text), looked
    /// up once.
    ascii: [[Option<Glyph>; 128]; 3],
    database: Arc<Database>,
}

impl Fonts {
    /// The TrueType data of a font.
    pub fn data(&self, face: Face) -> &'static [u8] {
        self.data[face.index()]
    }

    /// The glyph `face` draws `c` with, if it has one.
    #[inline]
    pub fn glyph(&self, face: Face, c: char) -> Option<Glyph> {
        if c.is_ascii() {
            return self.ascii[face.index()][c as usize];
        }
        lookup(&self.faces[face.index()], c)
    }

    /// The glyph a font draws characters it does not have with (its
    /// `.notdef`, an empty box).
    pub fn missing(&self, face: Face) -> Glyph {
        let font = &self.faces[face.index()];
        let advance = font.glyph_hor_advance(ttf_parser::GlyphId(0)).unwrap_or(0);
        Glyph { id: 0, advance: f32::from(advance) / f32::from(font.units_per_em()) }
    }
}

fn lookup(font: &ttf_parser::Face<'_>, c: char) -> Option<Glyph> {
    let id = font.glyph_index(c)?;
    let advance = font.glyph_hor_advance(id).unwrap_or(0);
    Some(Glyph { id: id.0, advance: f32::from(advance) / f32::from(font.units_per_em()) })
}

/// The fonts, inflated on first use. A failure (only possible with a
/// broken build) is remembered and returned on every call.
pub fn get() -> Result<&'static Fonts, RenderError> {
    static FONTS: OnceLock<Result<Fonts, String>> = OnceLock::new();
    FONTS.get_or_init(load).as_ref().map_err(|e| RenderError::Fonts(e.clone()))
}

/// The `usvg` font database holding exactly the compiled-in fonts, with
/// every generic family (and so any family name it does not know, which
/// `usvg` falls back to `serif` for) set to DejaVu Sans. CJK characters are
/// found in Droid Sans Fallback by `usvg`'s per-character fallback.
pub fn database() -> Result<Arc<Database>, RenderError> {
    Ok(get()?.database.clone())
}

/// Registers the fonts with charts-rs (once per process), which measures
/// labels to lay a chart out: a family it does not know is measured with
/// its own Roboto, whose widths are not DejaVu's.
pub fn register_with_charts() -> Result<(), RenderError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let fonts = get().map_err(|e| e.to_string())?;
            let data: Vec<&[u8]> = Face::ALL.iter().map(|face| fonts.data(*face)).collect();
            charts_rs::add_fonts(&data).map_err(|e| e.to_string())
        })
        .as_ref()
        .map(|_| ())
        .map_err(|e| RenderError::Fonts(e.clone()))
}

fn load() -> Result<Fonts, String> {
    let mut data: [&'static [u8]; 3] = [&[]; 3];
    for (slot, gz) in data.iter_mut().zip(GZ) {
        let mut inflated = Vec::with_capacity(gz.len() * 3);
        flate2::read::GzDecoder::new(gz).read_to_end(&mut inflated).map_err(|e| format!("inflating a font: {e}"))?;
        // Held for the rest of the process (every renderer borrows from it),
        // so leaking it once is what a static holding it would do.
        *slot = inflated.leak();
    }
    let parse = |i: usize| ttf_parser::Face::parse(data[i], 0).map_err(|e| format!("parsing font {i}: {e}"));
    let faces = [parse(0)?, parse(1)?, parse(2)?];
    let mut ascii = [[None; 128]; 3];
    for (table, face) in ascii.iter_mut().zip(&faces) {
        for (c, slot) in table.iter_mut().enumerate() {
            *slot = lookup(face, char::from(c as u8));
        }
    }

    let mut database = Database::new();
    for bytes in data {
        database.load_font_source(Source::Binary(Arc::new(bytes)));
    }
    for family in [SANS_FAMILY, FALLBACK_FAMILY] {
        if !database.faces().any(|face| face.families.iter().any(|(name, _)| name == family)) {
            return Err(format!("no font of the family {family}"));
        }
    }
    // usvg resolves a font-family list by trying each name and then
    // `serif`: with every generic family on DejaVu Sans, no text is ever
    // left without a font.
    database.set_sans_serif_family(SANS_FAMILY);
    database.set_serif_family(SANS_FAMILY);
    database.set_monospace_family(SANS_FAMILY);
    database.set_cursive_family(SANS_FAMILY);
    database.set_fantasy_family(SANS_FAMILY);
    Ok(Fonts { data, faces, ascii, database: Arc::new(database) })
}

#[cfg(test)]
mod tests {
    use resvg::usvg::fontdb::{Family, Query, Weight};

    use super::*;

    #[test]
    fn every_family_resolves_to_a_compiled_in_font() {
        let db = database().unwrap();
        assert_eq!(db.len(), 3);
        let family_of = |families: &[Family<'_>], weight: Weight| {
            let id = db.query(&Query { families, weight, ..Query::default() }).expect("a font");
            db.face(id).unwrap().families[0].0.clone()
        };
        for family in [Family::SansSerif, Family::Serif, Family::Monospace, Family::Name(SANS_FAMILY)] {
            assert_eq!(family_of(&[family], Weight::NORMAL), SANS_FAMILY);
        }
        // A family that is not there falls back to serif, as usvg asks.
        assert_eq!(family_of(&[Family::Name("Roboto"), Family::Serif], Weight::NORMAL), SANS_FAMILY);
        assert_eq!(family_of(&[Family::Name(FALLBACK_FAMILY)], Weight::NORMAL), FALLBACK_FAMILY);
        let bold = db.query(&Query { families: &[Family::SansSerif], weight: Weight::BOLD, ..Query::default() }).unwrap();
        assert_eq!(db.face(bold).unwrap().weight, Weight::BOLD);
    }

    #[test]
    fn glyphs_come_from_the_font_that_has_them() {
        let fonts = get().unwrap();
        assert!(fonts.glyph(Face::Sans, 'A').is_some_and(|g| g.id != 0 && g.advance > 0.3));
        assert!(fonts.glyph(Face::Sans, 'Ж').is_some());
        assert!(fonts.glyph(Face::Sans, '売').is_none());
        assert!(fonts.glyph(Face::Fallback, '売').is_some());
    }
}
