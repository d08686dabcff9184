//! PDF exports: a paginated table (landscape A4, DejaVu Sans Mono so
//! columns line up) under a title, the filters and the generation time,
//! with the header row repeated on every page and page numbers.
//!
//! The objects are written with `pdf-writer`, one at a time, and handed out
//! as they are finished (the cross-reference table only needs each
//! object's offset), so memory stays flat whatever the number of pages.
//! Text in any script is written with embedded subsets of Unicode TrueType
//! fonts (`font.rs`): the glyphs used are collected while the pages are
//! written and the fonts are written at the end. Column widths and
//! truncation use the fonts' real advances.

mod font;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

use pdf_writer::{Chunk, Filter, Name, Rect, Ref, TextStr};
use shared::domain::export::{Cell, Encoder, Header};
use shared::platform::error::{Error, Result};

use font::{Glyphs, RESOURCE_NAMES};

const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 36.0;
const FONT_SIZE: f32 = 6.5;
const TITLE_SIZE: f32 = 12.0;
const LINE: f32 = 8.5;
/// Between columns, in character cells (the advance of `0`).
const GAP: f32 = 2.0;
/// The widest a column gets, in character cells.
const MAX_COL: f32 = 40.0;

const CATALOG: Ref = Ref::new(1);
const PAGES: Ref = Ref::new(2);
const INFO: Ref = Ref::new(3);
const FIRST_FREE: i32 = 4;

pub struct PdfEncoder {
    out: Vec<u8>,
    /// Bytes handed out so far plus those in `out`: the next object's offset.
    written: usize,
    offsets: Vec<(i32, usize)>,
    next_id: i32,
    pages: Vec<Ref>,
    header: Option<Header>,
    /// Rows of the page being filled.
    pending: Vec<Vec<String>>,
    /// Column widths in points.
    widths: Vec<f32>,
    rows: u64,
    glyphs: Glyphs,
}

impl Default for PdfEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Bold is drawn by also stroking the outlines (one font embedded, not two).
#[derive(Clone, Copy, PartialEq)]
enum Weight {
    Regular,
    Bold,
}

impl PdfEncoder {
    pub fn new() -> PdfEncoder {
        PdfEncoder {
            out: Vec::with_capacity(256 * 1024),
            written: 0,
            offsets: Vec::new(),
            next_id: FIRST_FREE,
            pages: Vec::new(),
            header: None,
            pending: Vec::new(),
            widths: Vec::new(),
            rows: 0,
            glyphs: Glyphs::default(),
        }
    }

    fn emit_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.written += bytes.len();
    }

    /// Append a chunk holding exactly one object, `id`.
    fn emit(&mut self, id: Ref, chunk: Chunk) {
        self.offsets.push((id.get(), self.written));
        self.emit_raw(chunk.as_bytes());
    }

    fn alloc(&mut self) -> Ref {
        let id = Ref::new(self.next_id);
        self.next_id += 1;
        id
    }

    fn rows_per_page(&self) -> usize {
        let first_page_heading = if self.pages.is_empty() { self.heading_lines() as f32 * LINE * 1.4 + 12.0 } else { 0.0 };
        ((PAGE_H - 2.0 * MARGIN - first_page_heading - 2.0 * LINE) / LINE).floor().max(1.0) as usize
    }

    fn heading_lines(&self) -> usize {
        2 + self.header.as_ref().map(|h| h.filters.len()).unwrap_or(0)
    }

    /// The width of one character cell (the advance of `0`) in points.
    fn cell(&mut self) -> f32 {
        self.glyphs.glyph('0').width * FONT_SIZE / 1000.0
    }

    /// Column widths (points) from the header and the first page of rows,
    /// scaled down to the page width when they do not fit.
    fn fit_widths(&mut self) {
        let Some(header) = self.header.take() else { return };
        let cell = self.cell();
        let (min, max) = (4.0 * cell, MAX_COL * cell);
        let em = FONT_SIZE / 1000.0;
        let mut widths: Vec<f32> = header.columns.iter().map(|(n, _)| (self.glyphs.width(n) * em).clamp(min, max)).collect();
        for row in &self.pending {
            for (w, text) in widths.iter_mut().zip(row) {
                *w = w.max((self.glyphs.width(text) * em).min(max));
            }
        }
        let room = PAGE_W - 2.0 * MARGIN;
        let gaps = GAP * cell * widths.len().saturating_sub(1) as f32;
        let needed: f32 = widths.iter().sum::<f32>() + gaps;
        if needed > room {
            let available = (room - gaps).max(0.0);
            let total: f32 = widths.iter().sum();
            for w in widths.iter_mut() {
                *w = (*w * available / total.max(1.0)).max(3.0 * cell);
            }
        }
        self.widths = widths;
        self.header = Some(header);
    }

    /// `text` as it fits in `width` points at `size`: cut with `~` when wider.
    fn fit<'t>(&mut self, text: &'t str, width: f32, size: f32) -> Cow<'t, str> {
        // A little slack: the widths were measured from the same text.
        let limit = width * 1000.0 / size + 0.01;
        if self.glyphs.width(text) <= limit {
            return Cow::Borrowed(text);
        }
        let limit = limit - self.glyphs.glyph('~').width;
        let mut used = 0.0;
        let mut cut = String::with_capacity(text.len());
        for c in text.chars() {
            used += self.glyphs.glyph(c).width;
            if used > limit {
                break;
            }
            cut.push(c);
        }
        cut.push('~');
        Cow::Owned(cut)
    }

    /// Show `text` at the current text position, switching fonts where a
    /// character comes from another one. `font` is the font selected in
    /// this text object so far.
    fn show(&mut self, page: &mut Vec<u8>, text: &str, size: f32, font: &mut Option<u8>) {
        let mut open = false;
        for c in text.chars() {
            let (f, cid) = self.glyphs.cid(c);
            if *font != Some(f) {
                if open {
                    page.extend_from_slice(b") Tj\n");
                }
                page.push(b'/');
                page.extend_from_slice(RESOURCE_NAMES[f as usize]);
                page.push(b' ');
                num(page, size);
                page.extend_from_slice(b" Tf\n(");
                *font = Some(f);
                open = true;
            } else if !open {
                page.push(b'(');
                open = true;
            }
            // Two bytes per CID in a literal string: only the delimiters
            // and line ends are escaped.
            for b in [(cid >> 8) as u8, cid as u8] {
                match b {
                    b'(' | b')' | b'\\' => page.extend_from_slice(&[b'\\', b]),
                    b'\n' => page.extend_from_slice(b"\\n"),
                    b'\r' => page.extend_from_slice(b"\\r"),
                    _ => page.push(b),
                }
            }
        }
        if open {
            page.extend_from_slice(b") Tj\n");
        }
    }

    /// One line of text starting at (`x`, `y`).
    fn text_line(&mut self, page: &mut Vec<u8>, text: &str, x: f32, y: f32, size: f32, weight: Weight) {
        self.cells_line(page, &[text], &[f32::INFINITY], x, y, size, weight);
    }

    /// One line of cells, each in its column (`widths`, points), from `x`.
    #[allow(clippy::too_many_arguments)]
    fn cells_line<S: AsRef<str>>(&mut self, page: &mut Vec<u8>, cells: &[S], widths: &[f32], x: f32, y: f32, size: f32, weight: Weight) {
        if weight == Weight::Bold {
            page.extend_from_slice(b"q ");
            num(page, size * 0.04);
            page.extend_from_slice(b" w\nBT\n2 Tr\n");
        } else {
            page.extend_from_slice(b"BT\n");
        }
        let gap = GAP * self.cell();
        let mut font = None;
        num(page, x);
        page.push(b' ');
        num(page, y);
        page.extend_from_slice(b" Td\n");
        for (i, (cell, &width)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                // Td moves from the start of the previous cell.
                num(page, widths[i - 1] + gap);
                page.extend_from_slice(b" 0 Td\n");
            }
            let text = self.fit(cell.as_ref(), width, size);
            self.show(page, &text, size, &mut font);
        }
        page.extend_from_slice(if weight == Weight::Bold { b"ET\nQ\n" } else { b"ET\n" });
    }

    fn flush_page(&mut self) {
        if self.widths.is_empty() {
            self.fit_widths();
        }
        let header = self.header.clone().unwrap_or_else(|| Header {
            table: String::new(),
            title: String::new(),
            filters: vec![],
            generated_at: String::new(),
            columns: vec![],
        });
        let number = self.pages.len() + 1;
        let mut page = Vec::with_capacity(64 * 1024);
        let mut y = PAGE_H - MARGIN;
        if number == 1 {
            y -= 12.0;
            self.text_line(&mut page, &header.title, MARGIN, y, TITLE_SIZE, Weight::Bold);
            y -= LINE * 1.6;
            for filter in &header.filters {
                self.text_line(&mut page, &format!("Filter: {filter}"), MARGIN, y, FONT_SIZE + 1.0, Weight::Regular);
                y -= LINE * 1.3;
            }
            self.text_line(&mut page, &format!("Generated: {}", header.generated_at), MARGIN, y, FONT_SIZE + 1.0, Weight::Regular);
            y -= LINE * 1.8;
        } else {
            y -= LINE;
        }
        let names: Vec<&str> = header.columns.iter().map(|(n, _)| n.as_str()).collect();
        let widths = std::mem::take(&mut self.widths);
        self.cells_line(&mut page, &names, &widths, MARGIN, y, FONT_SIZE, Weight::Bold);
        // The rule under the header.
        let _ = write!(page, "0.5 w\n{MARGIN} ");
        num(&mut page, y - 2.5);
        let _ = write!(page, " m\n{} ", PAGE_W - MARGIN);
        num(&mut page, y - 2.5);
        page.extend_from_slice(b" l\nS\n");
        y -= LINE * 1.2;
        let rows = std::mem::take(&mut self.pending);
        if rows.is_empty() && number == 1 {
            self.text_line(&mut page, "(no rows)", MARGIN, y, FONT_SIZE, Weight::Regular);
        }
        for row in &rows {
            self.cells_line(&mut page, row, &widths, MARGIN, y, FONT_SIZE, Weight::Regular);
            y -= LINE;
        }
        self.widths = widths;
        self.text_line(&mut page, &format!("{} - page {number}", header.title), MARGIN, MARGIN / 2.0, FONT_SIZE, Weight::Regular);
        let data = font::deflate(&page, flate2::Compression::fast());

        let content_id = self.alloc();
        let page_id = self.alloc();
        let mut chunk = Chunk::new();
        chunk.stream(content_id, &data).filter(Filter::FlateDecode);
        self.emit(content_id, chunk);
        let next_id = &mut self.next_id;
        let fonts = self.glyphs.font_refs(|| {
            let id = Ref::new(*next_id);
            *next_id += 1;
            id
        });
        let mut chunk = Chunk::new();
        {
            let mut page = chunk.page(page_id);
            page.parent(PAGES).media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H)).contents(content_id);
            let mut resources = page.resources();
            let mut dict = resources.fonts();
            for (name, id) in fonts {
                dict.pair(Name(name), id);
            }
        }
        self.emit(page_id, chunk);
        self.pages.push(page_id);
    }
}

/// A number in a content stream, to 1/100 point.
fn num(out: &mut Vec<u8>, value: f32) {
    let hundredths = (value * 100.0).round() as i64;
    if hundredths < 0 {
        out.push(b'-');
    }
    let (whole, frac) = (hundredths.unsigned_abs() / 100, hundredths.unsigned_abs() % 100);
    let _ = write!(out, "{whole}");
    if frac != 0 {
        out.push(b'.');
        out.push(b'0' + (frac / 10) as u8);
        if frac % 10 != 0 {
            out.push(b'0' + (frac % 10) as u8);
        }
    }
}

/// A cell's text as drawn: control characters (newlines, tabs…) become spaces.
fn printable(text: Cow<'_, str>) -> String {
    if text.chars().any(char::is_control) { text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect() } else { text.into_owned() }
}

impl Encoder for PdfEncoder {
    fn begin(&mut self, header: &Header) -> Result<()> {
        let mut header = header.clone();
        header.title = printable(Cow::Owned(header.title));
        header.filters = header.filters.into_iter().map(|f| printable(Cow::Owned(f))).collect();
        for (name, _) in header.columns.iter_mut() {
            *name = printable(Cow::Borrowed(name.as_str()));
        }
        self.header = Some(header);
        self.emit_raw(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n");
        Ok(())
    }

    fn row(&mut self, row: &[Cell]) -> Result<()> {
        self.pending.push(row.iter().map(|c| printable(c.as_text())).collect());
        self.rows += 1;
        if self.pending.len() >= self.rows_per_page() {
            self.flush_page();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if !self.pending.is_empty() || self.pages.is_empty() {
            self.flush_page();
        }
        let header = self.header.clone();
        let glyphs = std::mem::take(&mut self.glyphs);
        glyphs.write_fonts(self).map_err(|e| Error::internal(format!("pdf: {e}")))?;
        let mut chunk = Chunk::new();
        chunk.pages(PAGES).kids(self.pages.iter().copied()).count(self.pages.len() as i32);
        self.emit(PAGES, chunk);
        let mut chunk = Chunk::new();
        chunk.indirect(CATALOG).dict().pair(Name(b"Type"), Name(b"Catalog")).pair(Name(b"Pages"), PAGES);
        self.emit(CATALOG, chunk);
        let mut chunk = Chunk::new();
        {
            let title = header.as_ref().map(|h| h.title.clone()).unwrap_or_default();
            chunk.indirect(INFO).dict().pair(Name(b"Title"), TextStr(&title)).pair(Name(b"Producer"), TextStr("Keel"));
        }
        self.emit(INFO, chunk);

        // Cross-reference table: every id from 1 to the last, in order.
        let xref_at = self.written;
        let size = self.next_id;
        let mut offsets = vec![0usize; size as usize];
        for (id, offset) in &self.offsets {
            offsets[*id as usize] = *offset;
        }
        let mut xref = String::with_capacity(20 * size as usize + 128);
        let _ = write!(xref, "xref\n0 {size}\n0000000000 65535 f \n");
        for offset in &offsets[1..] {
            let _ = writeln!(xref, "{offset:010} 00000 n ");
        }
        let _ = write!(xref, "trailer\n<< /Size {size} /Root {} 0 R /Info {} 0 R >>\nstartxref\n{xref_at}\n%%EOF\n", CATALOG.get(), INFO.get());
        self.emit_raw(xref.as_bytes());
        self.offsets = Vec::new();
        Ok(())
    }

    fn take(&mut self, into: &mut Vec<u8>) -> Result<()> {
        into.append(&mut self.out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::export::CellKind;

    fn header() -> Header {
        Header {
            table: "t".into(),
            title: "Keel export: t".into(),
            filters: vec!["status = active".into()],
            generated_at: "2026-11-21T00:00:00Z".into(),
            columns: vec![("id".into(), CellKind::Text), ("n".into(), CellKind::Integer)],
        }
    }

    fn encode(rows: &[&str]) -> Vec<u8> {
        let mut pdf = PdfEncoder::new();
        pdf.begin(&header()).unwrap();
        for (i, text) in rows.iter().enumerate() {
            pdf.row(&[Cell::Text(text.to_string()), Cell::Int(i as i64)]).unwrap();
        }
        pdf.finish().unwrap();
        let mut out = Vec::new();
        pdf.take(&mut out).unwrap();
        out
    }

    /// Every stream of the file, inflated (they are all FlateDecode).
    fn streams(pdf: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(start) = pdf[at..].windows(7).position(|w| w == b"stream\n").map(|p| at + p) {
            if pdf[..start].ends_with(b"end") {
                at = start + 7;
                continue;
            }
            let dict_start = pdf[..start].windows(4).rposition(|w| w == b" obj").unwrap();
            let dict = String::from_utf8_lossy(&pdf[dict_start..start]).into_owned();
            let end = pdf[start..].windows(10).position(|w| w == b"\nendstream").unwrap() + start;
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&pdf[start + 7..end]), &mut data).unwrap();
            found.push((dict, data));
            at = end;
        }
        found
    }

    /// The characters a ToUnicode CMap maps its CIDs (but 0) to.
    fn to_unicode(cmap: &[u8]) -> Vec<(u16, String)> {
        let text = String::from_utf8(cmap.to_vec()).unwrap();
        let mut pairs = Vec::new();
        let mut in_bfchar = false;
        for line in text.lines() {
            if line.ends_with("beginbfchar") || line == "endbfchar" {
                in_bfchar = line != "endbfchar";
                continue;
            }
            if !in_bfchar {
                continue;
            }
            let parts: Vec<&str> = line.split(['<', '>', ' ']).filter(|p| !p.is_empty()).collect();
            let cid = u16::from_str_radix(parts[0], 16).unwrap();
            let units: Vec<u16> = (0..parts[1].len() / 4).map(|i| u16::from_str_radix(&parts[1][4 * i..4 * i + 4], 16).unwrap()).collect();
            if cid != 0 {
                pairs.push((cid, String::from_utf16(&units).unwrap()));
            }
        }
        pairs
    }

    /// The cross-reference table points at every object (readers rely on
    /// it); the independent read-back is in tests/api/exports.rs.
    #[test]
    fn offsets_point_at_their_objects_across_pages() {
        let mut pdf = PdfEncoder::new();
        pdf.begin(&header()).unwrap();
        let mut out = Vec::new();
        for i in 0..500 {
            pdf.row(&[Cell::Text(format!("row ({i}) \\ é ✓ 山")), Cell::Int(i)]).unwrap();
            if i % 97 == 0 {
                pdf.take(&mut out).unwrap();
            }
        }
        pdf.finish().unwrap();
        pdf.take(&mut out).unwrap();
        assert!(out.starts_with(b"%PDF-1.7"));
        assert!(pdf.pages.len() > 5, "{} pages", pdf.pages.len());
        // Work on bytes: streams are compressed.
        let marker = b"startxref\n";
        let at = out.windows(marker.len()).rposition(|w| w == marker).unwrap() + marker.len();
        let start: usize = String::from_utf8_lossy(&out[at..]).lines().next().unwrap().parse().unwrap();
        let xref = String::from_utf8(out[start..].to_vec()).unwrap();
        assert!(xref.starts_with("xref\n0 "));
        let size: usize = xref.lines().nth(1).unwrap()[2..].parse().unwrap();
        let entries: Vec<&str> = xref.lines().skip(3).take_while(|l| l.ends_with(" n ")).collect();
        assert_eq!(entries.len(), size - 1, "every id is an object");
        for (id, line) in entries.iter().enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            let expected = format!("{} 0 obj", id + 1);
            assert_eq!(&out[offset..offset + expected.len()], expected.as_bytes(), "object {}", id + 1);
        }
    }

    #[test]
    fn an_empty_export_is_one_page() {
        let mut pdf = PdfEncoder::new();
        pdf.begin(&header()).unwrap();
        pdf.finish().unwrap();
        assert_eq!(pdf.pages.len(), 1);
    }

    #[test]
    fn control_characters_print_as_spaces() {
        assert_eq!(printable(Cow::Borrowed("a\nb\tc\u{7f}")), "a b c ");
        assert_eq!(printable(Cow::Borrowed("Zoë 山田")), "Zoë 山田");
    }

    /// Each script is drawn with a CID font embedding a subset of its
    /// TrueType font, with widths and a ToUnicode CMap giving back every
    /// character written.
    #[test]
    fn text_in_any_script_embeds_subset_cid_fonts_that_map_back_to_unicode() {
        let rows = ["Zoë Łukasz-Öztürk", "Дмитрий", "Ελένη", "山田太郎", "€ £ ¥ ₹ ő", "\u{1F600} (no font has it)"];
        let pdf = encode(&rows);
        let text = String::from_utf8_lossy(&pdf);
        assert_eq!(text.matches("/Subtype /Type0").count(), 2, "one font per script family");
        assert_eq!(text.matches("/Encoding /Identity-H").count(), 2);
        assert_eq!(text.matches("/Subtype /CIDFontType2").count(), 2);
        assert!(text.contains("+DejaVuSansMono") && text.contains("+DroidSansFallback"));
        assert_eq!(text.matches("/FontFile2").count(), 2);
        assert!(!text.contains("WinAnsi"));
        let streams = streams(&pdf);
        // Subsets: valid TrueType fonts holding a few glyphs, far smaller than the fonts.
        let fonts: Vec<&Vec<u8>> = streams.iter().filter(|(d, _)| d.contains("/Length1")).map(|(_, s)| s).collect();
        assert_eq!(fonts.len(), 2);
        for font in &fonts {
            let face = ttf_parser::Face::parse(font, 0).unwrap();
            assert!(face.number_of_glyphs() < 100, "{} glyphs", face.number_of_glyphs());
            assert!(font.len() < 60_000, "{} bytes", font.len());
        }
        // Every character written maps back, each CID to exactly one character.
        let mut mapped: Vec<String> = Vec::new();
        for (_, cmap) in streams.iter().filter(|(_, s)| s.starts_with(b"%!PS-Adobe-3.0 Resource-CMap")) {
            mapped.extend(to_unicode(cmap).into_iter().map(|(_, c)| c));
        }
        let all: String = rows.concat() + "Keel export: t";
        for c in all.chars() {
            assert!(mapped.contains(&c.to_string()), "{c:?} has no ToUnicode mapping");
        }
        let mut unique = mapped.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), mapped.len(), "a character was given two CIDs");
    }

    #[test]
    fn an_export_without_cjk_embeds_one_font() {
        let text = String::from_utf8_lossy(&encode(&["plain", "ascii"])).into_owned();
        assert_eq!(text.matches("/Subtype /Type0").count(), 1);
        assert!(!text.contains("DroidSansFallback"));
    }

    #[test]
    fn widths_and_truncation_use_the_fonts_advances() {
        let mut pdf = PdfEncoder::new();
        // DejaVu Sans Mono: 1233 units of 2048; Droid Sans Fallback's ideographs are one em.
        assert!((pdf.glyphs.width("a") - 602.05).abs() < 0.1, "{}", pdf.glyphs.width("a"));
        assert!((pdf.glyphs.width("Дλ€") - 3.0 * 602.05).abs() < 0.5);
        assert!((pdf.glyphs.width("山") - 1000.0).abs() < 0.1, "{}", pdf.glyphs.width("山"));
        let cell = pdf.cell();
        let wide = "山".repeat(60);
        let cut = pdf.fit(&wide, MAX_COL * cell, FONT_SIZE).into_owned();
        assert!(cut.ends_with('~'));
        // 40 cells of 0.602 em hold 23 ideographs and the `~`.
        assert_eq!(cut.chars().count(), 24, "{cut}");
        assert!(pdf.glyphs.width(&cut) * FONT_SIZE / 1000.0 <= MAX_COL * cell);
        let latin = "a".repeat(60);
        assert_eq!(pdf.fit(&latin, MAX_COL * cell, FONT_SIZE).chars().count(), 40);
        assert_eq!(pdf.fit("short", MAX_COL * cell, FONT_SIZE), "short");
    }

    /// The same read-back as the integration test, when poppler is installed.
    #[test]
    fn pdftotext_reads_back_every_script() {
        let rows = ["Zoë Łukasz-Öztürk", "Дмитрий", "Ελένη", "山田太郎", "€12.50 £3 ¥800 ₹99", "Zoë\nnext"];
        let pdf = encode(&rows);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pdf");
        std::fs::write(&path, &pdf).unwrap();
        let Ok(out) = std::process::Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output() else {
            eprintln!("pdftotext not installed (make pdf-reader): read-back skipped here, tests/api/exports.rs does it");
            return;
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        for row in &rows[..5] {
            assert!(text.contains(row), "{row} missing from:\n{text}");
        }
        assert!(text.contains("Zoë next"), "{text}");
        assert!(text.contains("Keel export: t") && text.contains("Filter: status = active") && text.contains("page 1"), "{text}");
    }
}
