//! PDF exports: a paginated table (landscape A4, monospaced Courier so
//! columns line up) under a title, the filters and the generation time,
//! with the header row repeated on every page and page numbers.
//!
//! The objects are written with `pdf-writer`, one at a time, and handed out
//! as they are finished (the cross-reference table only needs each
//! object's offset), so memory stays flat whatever the number of pages.
//! Text uses the standard fonts with WinAnsi encoding; characters outside
//! it print as `?`.

use std::fmt::Write as _;

use pdf_writer::{Chunk, Content, Name, Rect, Ref, Str, TextStr};
use shared::platform::error::Result;
use shared::domain::export::{Cell, Encoder, Header};

const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 36.0;
const FONT_SIZE: f32 = 6.5;
/// Courier's advance is 600/1000 em.
const CHAR_W: f32 = FONT_SIZE * 0.6;
const LINE: f32 = 8.5;
const GAP: usize = 2;
/// The widest a column gets, in characters.
const MAX_COL: usize = 40;

const CATALOG: Ref = Ref::new(1);
const PAGES: Ref = Ref::new(2);
const COURIER: Ref = Ref::new(3);
const COURIER_BOLD: Ref = Ref::new(4);
const HELVETICA_BOLD: Ref = Ref::new(5);
const INFO: Ref = Ref::new(6);
const FIRST_FREE: i32 = 7;

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
    widths: Vec<usize>,
    rows: u64,
}

impl Default for PdfEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl PdfEncoder {
    pub fn new() -> PdfEncoder {
        PdfEncoder { out: Vec::with_capacity(256 * 1024), written: 0, offsets: Vec::new(), next_id: FIRST_FREE, pages: Vec::new(), header: None, pending: Vec::new(), widths: Vec::new(), rows: 0 }
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

    /// Column widths from the header and the first page of rows, scaled
    /// down to the page width when they do not fit.
    fn fit_widths(&mut self) {
        let Some(header) = &self.header else { return };
        let mut widths: Vec<usize> = header.columns.iter().map(|(n, _)| n.chars().count().clamp(4, MAX_COL)).collect();
        for row in &self.pending {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count().min(MAX_COL));
            }
        }
        let room = ((PAGE_W - 2.0 * MARGIN) / CHAR_W) as usize;
        let needed: usize = widths.iter().sum::<usize>() + GAP * widths.len().saturating_sub(1);
        if needed > room {
            let available = room.saturating_sub(GAP * widths.len().saturating_sub(1));
            let total: usize = widths.iter().sum();
            for w in widths.iter_mut() {
                *w = (*w * available / total.max(1)).max(3);
            }
        }
        self.widths = widths;
    }

    fn line(&self, cells: &[String]) -> Vec<u8> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&self.widths).enumerate() {
            if i > 0 {
                text.push_str(&" ".repeat(GAP));
            }
            let len = cell.chars().count();
            if len > *width {
                text.extend(cell.chars().take(width.saturating_sub(1)));
                text.push('~');
            } else {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(width - len));
                }
            }
        }
        win_ansi(&text)
    }

    fn flush_page(&mut self) {
        if self.widths.is_empty() {
            self.fit_widths();
        }
        let header = self.header.clone().unwrap_or_else(|| Header { table: String::new(), title: String::new(), filters: vec![], generated_at: String::new(), columns: vec![] });
        let number = self.pages.len() + 1;
        let mut content = Content::new();
        let mut y = PAGE_H - MARGIN;
        let text_line = |content: &mut Content, font: &[u8], size: f32, y: f32, bytes: &[u8]| {
            content.begin_text();
            content.set_font(Name(font), size);
            content.next_line(MARGIN, y);
            content.show(Str(bytes));
            content.end_text();
        };
        if number == 1 {
            y -= 12.0;
            text_line(&mut content, b"F3", 12.0, y, &win_ansi(&header.title));
            y -= LINE * 1.6;
            for filter in &header.filters {
                text_line(&mut content, b"F1", FONT_SIZE + 1.0, y, &win_ansi(&format!("Filter: {filter}")));
                y -= LINE * 1.3;
            }
            text_line(&mut content, b"F1", FONT_SIZE + 1.0, y, &win_ansi(&format!("Generated: {}", header.generated_at)));
            y -= LINE * 1.8;
        } else {
            y -= LINE;
        }
        let names: Vec<String> = header.columns.iter().map(|(n, _)| n.clone()).collect();
        text_line(&mut content, b"F2", FONT_SIZE, y, &self.line(&names));
        content.set_line_width(0.5);
        content.move_to(MARGIN, y - 2.5);
        content.line_to(PAGE_W - MARGIN, y - 2.5);
        content.stroke();
        y -= LINE * 1.2;
        let rows = std::mem::take(&mut self.pending);
        if rows.is_empty() && number == 1 {
            text_line(&mut content, b"F1", FONT_SIZE, y, b"(no rows)");
        }
        for row in &rows {
            text_line(&mut content, b"F1", FONT_SIZE, y, &self.line(row));
            y -= LINE;
        }
        text_line(&mut content, b"F1", FONT_SIZE, MARGIN / 2.0, &win_ansi(&format!("{} - page {number}", header.title)));
        let data = content.finish();

        let content_id = self.alloc();
        let page_id = self.alloc();
        let mut chunk = Chunk::new();
        chunk.stream(content_id, &data);
        self.emit(content_id, chunk);
        let mut chunk = Chunk::new();
        {
            let mut page = chunk.page(page_id);
            page.parent(PAGES).media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H)).contents(content_id);
            page.resources().fonts().pair(Name(b"F1"), COURIER).pair(Name(b"F2"), COURIER_BOLD).pair(Name(b"F3"), HELVETICA_BOLD);
        }
        self.emit(page_id, chunk);
        self.pages.push(page_id);
    }
}

/// Text in WinAnsiEncoding (Latin-1 for what these exports hold); other
/// characters become `?`, control characters a space.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c as u32 {
            0x20..=0x7e | 0xa0..=0xff => c as u32 as u8,
            0x00..=0x1f | 0x7f => b' ',
            _ => b'?',
        })
        .collect()
}

impl Encoder for PdfEncoder {
    fn begin(&mut self, header: &Header) -> Result<()> {
        self.header = Some(header.clone());
        self.emit_raw(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n");
        Ok(())
    }

    fn row(&mut self, row: &[Cell]) -> Result<()> {
        self.pending.push(row.iter().map(|c| c.as_text().into_owned()).collect());
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
        let mut chunk = Chunk::new();
        chunk.type1_font(COURIER).base_font(Name(b"Courier")).encoding_predefined(Name(b"WinAnsiEncoding"));
        self.emit(COURIER, chunk);
        let mut chunk = Chunk::new();
        chunk.type1_font(COURIER_BOLD).base_font(Name(b"Courier-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
        self.emit(COURIER_BOLD, chunk);
        let mut chunk = Chunk::new();
        chunk.type1_font(HELVETICA_BOLD).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));
        self.emit(HELVETICA_BOLD, chunk);
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
            let _ = write!(xref, "{offset:010} 00000 n \n");
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

    /// The cross-reference table points at every object (readers rely on
    /// it); the independent read-back is in tests/api/exports.rs.
    #[test]
    fn offsets_point_at_their_objects_across_pages() {
        let mut pdf = PdfEncoder::new();
        pdf.begin(&header()).unwrap();
        let mut out = Vec::new();
        for i in 0..500 {
            pdf.row(&[Cell::Text(format!("row ({i}) \\ é ✓")), Cell::Int(i)]).unwrap();
            if i % 97 == 0 {
                pdf.take(&mut out).unwrap();
            }
        }
        pdf.finish().unwrap();
        pdf.take(&mut out).unwrap();
        assert!(out.starts_with(b"%PDF-1.7"));
        assert!(pdf.pages.len() > 5, "{} pages", pdf.pages.len());
        // Work on bytes: the text holds WinAnsi (not UTF-8) bytes.
        let marker = b"startxref\n";
        let at = out.windows(marker.len()).rposition(|w| w == marker).unwrap() + marker.len();
        let start: usize = String::from_utf8_lossy(&out[at..]).lines().next().unwrap().parse().unwrap();
        let xref = String::from_utf8(out[start..].to_vec()).unwrap();
        assert!(xref.starts_with("xref\n0 "));
        for (id, line) in xref.lines().skip(3).take_while(|l| l.ends_with(" n ")).enumerate() {
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
    fn win_ansi_keeps_latin1_and_replaces_the_rest() {
        assert_eq!(win_ansi("aé✓\n"), vec![b'a', 0xe9, b'?', b' ']);
    }
}
