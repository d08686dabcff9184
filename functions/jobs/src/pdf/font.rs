//! The fonts PDF exports write with, and the subsets of them that each PDF
//! embeds.
//!
//! Two TrueType fonts are compiled in, gzip-compressed
//! (`functions/jobs/fonts/`, with their licences): DejaVu Sans Mono for
//! Latin, Greek, Cyrillic and symbols, and Droid Sans Fallback for CJK.
//! Each character is drawn with the first of them that has it; one that
//! neither has is drawn as the first font's `.notdef` box but still reads
//! back as itself. A font is inflated (once per process) the first time an
//! export needs it.
//!
//! Every font is written as a Type0 font with `Identity-H` encoding over a
//! `CIDFontType2` holding a subset of the TrueType font. CIDs are handed
//! out per distinct *character* (1, 2, 3, … in order of first use) rather
//! than per glyph, so the `ToUnicode` CMap maps each CID to exactly one
//! character and text extraction gives back exactly what was written, even
//! where a font draws two characters with one glyph; a `CIDToGIDMap` stream
//! maps each CID to its glyph in the subset. Content streams are written
//! page by page while the glyphs in use are collected; the subsets, widths
//! and CMaps can only be written at the end ([`Glyphs::write_fonts`]).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::OnceLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Chunk, Filter, Name, Rect, Ref, Str};

/// A compiled-in, compressed font, inflated and parsed on first use.
pub(super) struct EmbeddedFont {
    /// PostScript name, the `BaseFont` after the subset tag.
    name: &'static str,
    gz: &'static [u8],
    data: OnceLock<Vec<u8>>,
    face: OnceLock<ttf_parser::Face<'static>>,
}

impl EmbeddedFont {
    const fn new(name: &'static str, gz: &'static [u8]) -> EmbeddedFont {
        EmbeddedFont { name, gz, data: OnceLock::new(), face: OnceLock::new() }
    }

    fn data(&'static self) -> &'static [u8] {
        self.data.get_or_init(|| {
            let mut data = Vec::with_capacity(4 << 20);
            flate2::read::GzDecoder::new(self.gz).read_to_end(&mut data).expect("a compiled-in font inflates");
            data
        })
    }

    pub(super) fn face(&'static self) -> &'static ttf_parser::Face<'static> {
        self.face.get_or_init(|| ttf_parser::Face::parse(self.data(), 0).expect("a compiled-in font parses"))
    }
}

/// The fonts in the order they are tried for each character.
pub(super) static FONTS: [EmbeddedFont; 2] = [
    EmbeddedFont::new("DejaVuSansMono", include_bytes!("../../fonts/DejaVuSansMono.ttf.gz")),
    EmbeddedFont::new("DroidSansFallback", include_bytes!("../../fonts/DroidSansFallback.ttf.gz")),
];

/// A CID not handed out yet.
const UNASSIGNED: u16 = u16::MAX;
/// CIDs per font: the rest would need a second font object; characters
/// beyond it (an export using over 65,000 distinct ones) share CID 0.
const MAX_CID: u16 = u16::MAX - 1;

/// How one character is drawn.
#[derive(Clone, Copy, Debug)]
pub(super) struct Glyph {
    /// Index in [`FONTS`].
    pub font: u8,
    /// Glyph in that font (0, `.notdef`, when no font has the character).
    gid: u16,
    /// Advance in thousandths of the font size.
    pub width: f32,
    cid: u16,
}

/// What one PDF uses of one font.
#[derive(Default)]
struct Used {
    /// The character and glyph of CID `i + 1`.
    cids: Vec<(char, u16)>,
    /// The Type0 font object, once a page refers to it.
    font_ref: Option<Ref>,
}

/// The glyphs of one PDF: widths for layout, CIDs for content streams,
/// and, at the end, the font objects.
pub(super) struct Glyphs {
    ascii: [Option<Glyph>; 128],
    other: HashMap<char, Glyph>,
    used: [Used; 2],
}

impl Default for Glyphs {
    fn default() -> Self {
        Glyphs { ascii: [None; 128], other: HashMap::new(), used: Default::default() }
    }
}

/// Resource names of the fonts on every page.
pub(super) const RESOURCE_NAMES: [&[u8]; 2] = [b"F1", b"F2"];

impl Glyphs {
    /// How `c` is drawn (control characters should have been replaced).
    #[inline]
    pub fn glyph(&mut self, c: char) -> Glyph {
        if (c as u32) < 128 {
            if let Some(g) = self.ascii[c as usize] {
                return g;
            }
            let g = lookup(c);
            self.ascii[c as usize] = Some(g);
            return g;
        }
        *self.other.entry(c).or_insert_with(|| lookup(c))
    }

    /// The width of `text` in thousandths of the font size.
    pub fn width(&mut self, text: &str) -> f32 {
        let mut width = 0.0;
        for c in text.chars() {
            width += match self.ascii.get(c as usize) {
                Some(Some(g)) => g.width,
                _ => self.glyph(c).width,
            };
        }
        width
    }

    /// The CID `c` is shown with, handing out the next one on first use.
    #[inline]
    pub fn cid(&mut self, c: char) -> (u8, u16) {
        if let Some(Some(g)) = self.ascii.get(c as usize)
            && g.cid != UNASSIGNED
        {
            return (g.font, g.cid);
        }
        let slot = if (c as u32) < 128 {
            self.glyph(c);
            self.ascii[c as usize].as_mut().unwrap()
        } else {
            self.glyph(c);
            self.other.get_mut(&c).unwrap()
        };
        if slot.cid == UNASSIGNED {
            let used = &mut self.used[slot.font as usize];
            slot.cid = if used.cids.len() < MAX_CID as usize {
                used.cids.push((c, slot.gid));
                used.cids.len() as u16
            } else {
                0
            };
        }
        (slot.font, slot.cid)
    }

    /// The font objects the pages so far refer to, allocating those of
    /// fonts first used now with `alloc`.
    pub fn font_refs(&mut self, mut alloc: impl FnMut() -> Ref) -> Vec<(&'static [u8], Ref)> {
        let mut refs = Vec::new();
        for (i, used) in self.used.iter_mut().enumerate() {
            if used.cids.is_empty() {
                continue;
            }
            let id = *used.font_ref.get_or_insert_with(&mut alloc);
            refs.push((RESOURCE_NAMES[i], id));
        }
        refs
    }

    /// Write every font a page refers to: the Type0 font (the id handed
    /// out by [`Glyphs::font_refs`]), its CID font, descriptor, subset,
    /// `ToUnicode` CMap and `CIDToGIDMap`. Each chunk holds one object.
    pub fn write_fonts(&self, pdf: &mut super::PdfEncoder) -> Result<(), String> {
        for (i, used) in self.used.iter().enumerate() {
            let Some(type0_ref) = used.font_ref else { continue };
            let font = &FONTS[i];
            let face = font.face();
            let (cid_ref, descriptor_ref, file_ref, cmap_ref, map_ref) = (pdf.alloc(), pdf.alloc(), pdf.alloc(), pdf.alloc(), pdf.alloc());

            // The subset: glyph 0 plus every glyph a CID uses, numbered in
            // order of first use (composite glyphs' parts are added after).
            let mut remapper = subsetter::GlyphRemapper::new();
            let mut cid_to_gid = Vec::with_capacity(2 * (used.cids.len() + 1));
            cid_to_gid.extend_from_slice(&[0, 0]);
            for &(_, gid) in &used.cids {
                cid_to_gid.extend_from_slice(&remapper.remap(gid).to_be_bytes());
            }
            let subset = subsetter::subset(font.data(), 0, &remapper).map_err(|e| format!("subsetting {}: {e}", font.name))?;

            // A subset's name starts with a tag of six capitals derived from its glyphs.
            let mut hash: u32 = 2166136261;
            for &(c, gid) in &used.cids {
                for b in (c as u32).to_le_bytes().into_iter().chain(gid.to_le_bytes()) {
                    hash = (hash ^ b as u32).wrapping_mul(16777619);
                }
            }
            let mut base_font = String::with_capacity(7 + font.name.len());
            for _ in 0..6 {
                base_font.push((b'A' + (hash % 26) as u8) as char);
                hash /= 26;
            }
            base_font.push('+');
            base_font.push_str(font.name);
            let base_font = Name(base_font.as_bytes());

            let mut chunk = Chunk::new();
            chunk.type0_font(type0_ref).base_font(base_font).encoding_predefined(Name(b"Identity-H")).descendant_font(cid_ref).to_unicode(cmap_ref);
            pdf.emit(type0_ref, chunk);

            let scale = 1000.0 / face.units_per_em() as f32;
            let system_info = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };
            let mut chunk = Chunk::new();
            {
                let mut cid = chunk.cid_font(cid_ref);
                cid.subtype(CidFontType::Type2).base_font(base_font).system_info(system_info).font_descriptor(descriptor_ref);
                cid.default_width(advance(face, ttf_parser::GlyphId(0)) as f32 * scale);
                cid.widths().consecutive(1, used.cids.iter().map(|&(_, gid)| (advance(face, ttf_parser::GlyphId(gid)) as f32 * scale).round()));
                cid.cid_to_gid_map_stream(map_ref);
            }
            pdf.emit(cid_ref, chunk);

            let bbox = face.global_bounding_box();
            let mut flags = FontFlags::SYMBOLIC;
            if face.is_monospaced() {
                flags |= FontFlags::FIXED_PITCH;
            }
            let mut chunk = Chunk::new();
            chunk
                .font_descriptor(descriptor_ref)
                .name(base_font)
                .flags(flags)
                .bbox(Rect::new(bbox.x_min as f32 * scale, bbox.y_min as f32 * scale, bbox.x_max as f32 * scale, bbox.y_max as f32 * scale))
                .italic_angle(face.italic_angle())
                .ascent(face.ascender() as f32 * scale)
                .descent(face.descender() as f32 * scale)
                .cap_height(face.capital_height().unwrap_or(face.ascender()) as f32 * scale)
                .stem_v(80.0)
                .font_file2(file_ref);
            pdf.emit(descriptor_ref, chunk);

            let mut chunk = Chunk::new();
            chunk.stream(file_ref, &deflate(&subset, flate2::Compression::best())).filter(Filter::FlateDecode).pair(Name(b"Length1"), subset.len() as i32);
            pdf.emit(file_ref, chunk);

            let mut cmap = UnicodeCmap::new(Name(b"Keel-UTF16"), system_info);
            cmap.pair(0, char::REPLACEMENT_CHARACTER);
            for (i, &(c, _)) in used.cids.iter().enumerate() {
                cmap.pair(i as u16 + 1, c);
            }
            let mut chunk = Chunk::new();
            chunk.stream(cmap_ref, &deflate(&cmap.finish(), flate2::Compression::default())).filter(Filter::FlateDecode);
            pdf.emit(cmap_ref, chunk);

            let mut chunk = Chunk::new();
            chunk.stream(map_ref, &deflate(&cid_to_gid, flate2::Compression::default())).filter(Filter::FlateDecode);
            pdf.emit(map_ref, chunk);
        }
        Ok(())
    }
}

fn advance(face: &ttf_parser::Face, gid: ttf_parser::GlyphId) -> u16 {
    face.glyph_hor_advance(gid).unwrap_or(0)
}

/// The first font that has `c`, or the first font's `.notdef`.
fn lookup(c: char) -> Glyph {
    for (i, font) in FONTS.iter().enumerate() {
        let face = font.face();
        if let Some(gid) = face.glyph_index(c) {
            return Glyph { font: i as u8, gid: gid.0, width: advance(face, gid) as f32 * 1000.0 / face.units_per_em() as f32, cid: UNASSIGNED };
        }
    }
    let face = FONTS[0].face();
    Glyph { font: 0, gid: 0, width: advance(face, ttf_parser::GlyphId(0)) as f32 * 1000.0 / face.units_per_em() as f32, cid: UNASSIGNED }
}

pub(super) fn deflate(data: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
    z.write_all(data).expect("writing to memory");
    z.finish().expect("writing to memory")
}
