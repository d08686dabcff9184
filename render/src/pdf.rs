//! The PDF of a report, written with krilla.
//!
//! A title page (title, description, data range, when and for whom it was
//! generated, the parameters), then the KPI tiles, then each section: its
//! heading and description, its chart as vector graphics (drawn from the
//! chart's SVG by krilla-svg, its text real PDF text in the same fonts) and
//! its table, which breaks across pages with its header row repeated.
//! Every page has a footer with the report's title and "Page N of M".
//!
//! Pages are laid out first and drawn after, since a footer needs the
//! number of pages. The layout holds what each page shows; a table's rows
//! are only referred to (which rows go on which page) and formatted as they
//! are drawn, so a long table costs no more memory than its data.
//!
//! Text is written with DejaVu Sans (Bold), and each character DejaVu
//! lacks with Droid Sans Fallback (CJK): a string is split into runs by the
//! font that has the glyph, and each run is drawn with its font. Glyphs are placed by their advances, without shaping: Latin,
//! Greek, Cyrillic and CJK read right; scripts that need shaping (Arabic,
//! Indic) show their letters unjoined.

use std::ops::Range;

use chrono::{Datelike, Timelike};
use krilla::color::rgb;
use krilla::destination::XyzDestination;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::metadata::{DateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::outline::{Outline, OutlineNode};
use krilla::page::PageSettings;
use krilla::paint::{Fill, FillRule, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId, KrillaGlyph};
use krilla::{Data, Document as PdfDocument};
use krilla_svg::{SurfaceExt, SvgSettings};
use resvg::usvg;
use serde_json::Value;

use crate::fonts::{self, Face, Fonts};
use crate::format::{format_change, format_number, format_value, number};
use crate::{Document, PageSize, RenderError, Section, Table, Unit, chart};

/// Page margins, in points: left and right, above the content, and below
/// it (the footer is drawn in the bottom margin).
const MARGIN_X: f32 = 42.0;
const MARGIN_TOP: f32 = 48.0;
const MARGIN_BOTTOM: f32 = 56.0;

const TEXT: Rgb = Rgb(0x1F, 0x29, 0x33);
const MUTED: Rgb = Rgb(0x5F, 0x6B, 0x7A);
const RULE: Rgb = Rgb(0xD5, 0xDB, 0xE3);
const HEADER_FILL: Rgb = Rgb(0xEB, 0xEF, 0xF4);
const STRIPE_FILL: Rgb = Rgb(0xF7, 0xF9, 0xFB);
const TILE_FILL: Rgb = Rgb(0xF5, 0xF7, 0xFA);
const POSITIVE: Rgb = Rgb(0x1A, 0x7F, 0x37);
const NEGATIVE: Rgb = Rgb(0xC6, 0x28, 0x28);

/// Table text size, row heights and the room inside a cell on each side.
const TABLE_SIZE: f32 = 8.0;
const ROW_HEIGHT: f32 = 13.0;
const HEADER_HEIGHT: f32 = 16.0;
const CELL_PAD: f32 = 4.0;
/// Rows measured to size a table's columns: enough to see what a column
/// holds, without measuring every row of a long table twice.
const MEASURED_ROWS: usize = 500;

/// KPI tiles per row, and a tile's height.
const TILES_PER_ROW: usize = 3;
const TILE_HEIGHT: f32 = 64.0;
const TILE_GAP: f32 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rgb(u8, u8, u8);

impl Rgb {
    fn fill(self) -> Fill {
        Fill { paint: rgb::Color::new(self.0, self.1, self.2).into(), opacity: NormalizedF32::ONE, rule: FillRule::NonZero }
    }

    fn stroke(self, width: f32) -> Stroke {
        Stroke { paint: rgb::Color::new(self.0, self.1, self.2).into(), width, ..Stroke::default() }
    }
}

/// How a text is written: its size, weight and colour.
#[derive(Debug, Clone, Copy)]
struct Style {
    size: f32,
    bold: bool,
    color: Rgb,
}

const TITLE: Style = Style { size: 26.0, bold: true, color: TEXT };
const HEADING: Style = Style { size: 15.0, bold: true, color: TEXT };
const BODY: Style = Style { size: 10.5, bold: false, color: TEXT };
const BODY_MUTED: Style = Style { size: 10.5, bold: false, color: MUTED };
const LABEL: Style = Style { size: 9.5, bold: true, color: MUTED };
const SMALL_MUTED: Style = Style { size: 8.0, bold: false, color: MUTED };
const CELL: Style = Style { size: TABLE_SIZE, bold: false, color: TEXT };
const CELL_HEADER: Style = Style { size: TABLE_SIZE, bold: true, color: TEXT };

/// One thing drawn on a page.
enum Item {
    /// A line of text, `y` its baseline.
    Text {
        x: f32,
        y: f32,
        style: Style,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        width: f32,
        height: f32,
        fill: Option<Rgb>,
        stroke: Option<Rgb>,
    },
    Chart {
        x: f32,
        y: f32,
        width: f32,
        height: f32,
        tree: Box<usvg::Tree>,
    },
    /// The header row of `tables[table]`, from `y` down.
    TableHeader {
        table: usize,
        y: f32,
    },
    /// Rows of `tables[table]`, from `y` down.
    TableRows {
        table: usize,
        rows: Range<usize>,
        y: f32,
    },
}

/// How a section's table is laid out: where its columns are, and which
/// are aligned right (numbers).
struct TableLayout<'a> {
    table: &'a Table,
    /// Left edge and width of each column.
    columns: Vec<(f32, f32)>,
    right_aligned: Vec<bool>,
}

/// A destination of the document outline: a section heading.
struct Bookmark {
    title: String,
    page: usize,
    y: f32,
}

/// Text measuring and fitting with the compiled-in fonts.
struct Text {
    fonts: &'static Fonts,
}

impl Text {
    fn primary(bold: bool) -> Face {
        if bold { Face::SansBold } else { Face::Sans }
    }

    /// The font and glyph `c` is drawn with.
    #[inline]
    fn glyph(&self, c: char, bold: bool) -> (Face, fonts::Glyph) {
        let primary = Self::primary(bold);
        if let Some(glyph) = self.fonts.glyph(primary, c) {
            return (primary, glyph);
        }
        if let Some(glyph) = self.fonts.glyph(Face::Fallback, c) {
            return (Face::Fallback, glyph);
        }
        // No font has it: drawn as an empty box, still read back as itself.
        (primary, self.fonts.missing(primary))
    }

    /// Width of `text` in points.
    fn width(&self, text: &str, style: Style) -> f32 {
        text.chars().map(|c| self.glyph(c, style.bold).1.advance).sum::<f32>() * style.size
    }

    /// `text` cut to `max` points with an ellipsis when it is wider.
    fn fit(&self, text: &str, style: Style, max: f32) -> String {
        if self.width(text, style) <= max {
            return text.to_string();
        }
        let room = max - self.width("…", style);
        let mut used = 0.0;
        let mut end = 0;
        for (i, c) in text.char_indices() {
            let advance = self.glyph(c, style.bold).1.advance * style.size;
            if used + advance > room {
                break;
            }
            used += advance;
            end = i + c.len_utf8();
        }
        format!("{}…", text[..end].trim_end())
    }

    /// `text` broken into lines of at most `max` points: at spaces, and
    /// inside a word (or a run of CJK, which has no spaces) longer than a
    /// line. Line breaks in the text are kept.
    fn wrap(&self, text: &str, style: Style, max: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            let mut line_width = 0.0;
            let space = self.width(" ", style);
            for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
                let word = clean(word);
                let word_width = self.width(&word, style);
                let gap = if line.is_empty() { 0.0 } else { space };
                if line_width + gap + word_width <= max {
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(&word);
                    line_width += gap + word_width;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line_width = 0.0;
                }
                // A word wider than a line is broken where it runs out.
                for c in word.chars() {
                    let advance = self.glyph(c, style.bold).1.advance * style.size;
                    if line_width + advance > max && !line.is_empty() {
                        lines.push(std::mem::take(&mut line));
                        line_width = 0.0;
                    }
                    line.push(c);
                    line_width += advance;
                }
            }
            lines.push(line);
        }
        lines
    }
}

/// Control characters (tabs, line breaks inside a cell) as spaces: a
/// font has no glyph for them and a line is one line.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) { text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().into() } else { text.into() }
}

/// The pages being laid out.
struct Layout<'a> {
    text: Text,
    page_width: f32,
    page_height: f32,
    pages: Vec<Vec<Item>>,
    /// Where the next thing goes on the last page.
    y: f32,
    tables: Vec<TableLayout<'a>>,
    bookmarks: Vec<Bookmark>,
}

impl<'a> Layout<'a> {
    fn content_width(&self) -> f32 {
        self.page_width - 2.0 * MARGIN_X
    }

    fn bottom(&self) -> f32 {
        self.page_height - MARGIN_BOTTOM
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN_TOP;
    }

    /// Starts a new page unless `height` more fits on this one (or this
    /// one is still empty: what does not fit on an empty page is drawn
    /// over its bottom margin rather than pushed on forever).
    fn ensure(&mut self, height: f32) {
        if self.y + height > self.bottom() && self.pages.last().is_some_and(|page| !page.is_empty()) {
            self.new_page();
        }
    }

    fn push(&mut self, item: Item) {
        if let Some(page) = self.pages.last_mut() {
            page.push(item);
        }
    }

    /// A paragraph from `x`, wrapped to `width`, each line moved to the
    /// next page when the page is full.
    fn paragraph(&mut self, text: &str, style: Style, x: f32, width: f32) {
        let line_height = style.size * 1.35;
        for line in self.text.wrap(text, style, width) {
            self.ensure(line_height);
            self.y += line_height;
            self.push(Item::Text { x, y: self.y - line_height * 0.28, style, text: line });
        }
    }

    fn title_page(&mut self, doc: &Document) {
        let width = self.content_width();
        self.y = MARGIN_TOP + 110.0;
        self.paragraph(&doc.title, TITLE, MARGIN_X, width);
        self.y += 6.0;
        self.push(Item::Rect { x: MARGIN_X, y: self.y, width: 64.0, height: 3.0, fill: Some(Rgb(0x54, 0x70, 0xC6)), stroke: None });
        self.y += 14.0;
        if let Some(description) = doc.description.as_deref().filter(|d| !d.trim().is_empty()) {
            self.paragraph(description, BODY_MUTED, MARGIN_X, width);
            self.y += 14.0;
        }

        let mut facts: Vec<(String, String)> = Vec::new();
        if let Some((from, to)) = &doc.data_range {
            facts.push(("Data range".to_string(), format!("{from} – {to}")));
        }
        facts.push(("Generated at".to_string(), doc.generated_at.format("%Y-%m-%d %H:%M UTC").to_string()));
        facts.push(("Requested by".to_string(), doc.requested_by.clone()));
        self.facts(&facts);
        if !doc.parameters.is_empty() {
            self.y += 12.0;
            self.ensure(HEADING.size * 2.0);
            self.paragraph("Parameters", Style { size: 12.0, ..HEADING }, MARGIN_X, width);
            self.y += 4.0;
            self.facts(&doc.parameters);
        }
    }

    /// Label/value lines: the label in a column of its own, the value
    /// wrapped beside it.
    fn facts(&mut self, facts: &[(String, String)]) {
        let label_width = 130.0;
        let value_x = MARGIN_X + label_width;
        let value_width = self.content_width() - label_width;
        for (label, value) in facts {
            let line_height = BODY.size * 1.35;
            self.ensure(line_height);
            let label = self.text.fit(&clean(label), LABEL, label_width - 8.0);
            self.push(Item::Text { x: MARGIN_X, y: self.y + line_height * 0.72, style: LABEL, text: label });
            self.paragraph(value, BODY, value_x, value_width);
            self.y += 4.0;
        }
    }

    fn kpis(&mut self, doc: &Document) {
        if doc.kpis.is_empty() {
            return;
        }
        self.ensure(HEADING.size * 2.0 + TILE_HEIGHT);
        self.heading("Key figures");
        let tile_width = (self.content_width() - TILE_GAP * (TILES_PER_ROW - 1) as f32) / TILES_PER_ROW as f32;
        for row in doc.kpis.chunks(TILES_PER_ROW) {
            self.ensure(TILE_HEIGHT);
            let top = self.y;
            for (i, kpi) in row.iter().enumerate() {
                let x = MARGIN_X + i as f32 * (tile_width + TILE_GAP);
                let inner = tile_width - 2.0 * 10.0;
                self.push(Item::Rect { x, y: top, width: tile_width, height: TILE_HEIGHT, fill: Some(TILE_FILL), stroke: Some(RULE) });
                // A long label is set smaller (down to 7 pt) before it is cut.
                let label = clean(&kpi.label);
                let mut label_style = LABEL;
                while label_style.size > 7.0 && self.text.width(&label, label_style) > inner {
                    label_style.size -= 0.5;
                }
                let label = self.text.fit(&label, label_style, inner);
                self.push(Item::Text { x: x + 10.0, y: top + 17.0, style: label_style, text: label });
                let value = kpi.value.filter(|v| v.is_finite()).map(|v| format_number(v, &kpi.unit)).unwrap_or_else(|| "–".to_string());
                // A long figure is set smaller before it is cut.
                let mut value_style = Style { size: 17.0, bold: true, color: TEXT };
                while value_style.size > 11.0 && self.text.width(&value, value_style) > inner {
                    value_style.size -= 1.0;
                }
                let value = self.text.fit(&value, value_style, inner);
                self.push(Item::Text { x: x + 10.0, y: top + 40.0, style: value_style, text: value });
                if let Some(change) = kpi.change.filter(|c| c.is_finite()) {
                    let text = format_change(change);
                    let color = if text.starts_with('+') {
                        POSITIVE
                    } else if text.starts_with('-') {
                        NEGATIVE
                    } else {
                        MUTED
                    };
                    let style = Style { size: 8.5, bold: false, color };
                    let text = self.text.fit(&format!("{text} vs previous period"), style, inner);
                    self.push(Item::Text { x: x + 10.0, y: top + 55.0, style, text });
                }
            }
            self.y = top + TILE_HEIGHT + TILE_GAP;
        }
        self.y += 8.0;
    }

    fn heading(&mut self, text: &str) {
        self.y += 4.0;
        self.paragraph(text, HEADING, MARGIN_X, self.content_width());
        self.y += 6.0;
    }

    fn section(&mut self, section: &'a Section) -> Result<(), RenderError> {
        let width = self.content_width();
        let chart = section.drawn_chart();
        let chart_height = width * chart::HEIGHT / chart::WIDTH;
        // A heading stays with what follows it: the chart, or the start of
        // the table.
        let first = if chart.is_some() { chart_height } else { HEADER_HEIGHT + 3.0 * ROW_HEIGHT };
        self.ensure(HEADING.size * 2.5 + first);
        self.bookmarks.push(Bookmark { title: section.title.clone(), page: self.pages.len() - 1, y: self.y });
        self.heading(&section.title);
        if let Some(description) = section.description.as_deref().filter(|d| !d.trim().is_empty()) {
            self.paragraph(description, BODY_MUTED, MARGIN_X, width);
            self.y += 6.0;
        }
        if let Some(chart) = chart {
            let svg = chart::svg(chart, &section.table)?;
            let tree = chart::tree(&svg)?;
            self.ensure(chart_height);
            self.push(Item::Chart { x: MARGIN_X, y: self.y, width, height: chart_height, tree: Box::new(tree) });
            self.y += chart_height + 10.0;
        }
        self.table(section);
        self.y += 18.0;
        Ok(())
    }

    fn table(&mut self, section: &'a Section) {
        let table = &section.table;
        if table.columns.is_empty() {
            return;
        }
        let index = self.tables.len();
        let layout = self.table_layout(table);
        self.tables.push(layout);

        self.ensure(HEADER_HEIGHT + ROW_HEIGHT);
        self.push(Item::TableHeader { table: index, y: self.y });
        self.y += HEADER_HEIGHT;
        if table.rows.is_empty() {
            self.y += 4.0;
            self.paragraph("No rows.", BODY_MUTED, MARGIN_X + CELL_PAD, self.content_width());
            return;
        }
        let mut start = 0;
        while start < table.rows.len() {
            let fit = ((self.bottom() - self.y) / ROW_HEIGHT).floor().max(0.0) as usize;
            let end = (start + fit).min(table.rows.len());
            if end > start {
                self.push(Item::TableRows { table: index, rows: start..end, y: self.y });
                self.y += (end - start) as f32 * ROW_HEIGHT;
                start = end;
            }
            if start < table.rows.len() {
                // The rest on the next page, under the table's name and its
                // header again.
                self.new_page();
                let note = self.text.fit(&format!("{} (continued)", clean(&section.title)), SMALL_MUTED, self.content_width());
                self.push(Item::Text { x: MARGIN_X, y: self.y + 9.0, style: SMALL_MUTED, text: note });
                self.y += 14.0;
                self.push(Item::TableHeader { table: index, y: self.y });
                self.y += HEADER_HEIGHT;
            }
        }
    }

    /// Column widths: each column as wide as its header and widest
    /// measured value, then fitted to the page (columns wider than an even
    /// share give up room, in proportion, to make the rest fit) or spread
    /// out to fill it.
    fn table_layout(&self, table: &'a Table) -> TableLayout<'a> {
        let total = self.content_width();
        let n = table.columns.len();
        let right_aligned: Vec<bool> = table.columns.iter().map(|c| c.unit != Unit::Text).collect();
        let mut natural: Vec<f32> = table.columns.iter().map(|c| self.text.width(&clean(&c.name), CELL_HEADER)).collect();
        for row in table.rows.iter().take(MEASURED_ROWS) {
            for (i, column) in table.columns.iter().enumerate() {
                let text = format_value(row.get(i).unwrap_or(&Value::Null), &column.unit);
                let width = self.text.width(&clean(&text), CELL);
                if width > natural[i] {
                    natural[i] = width;
                }
            }
        }
        let natural: Vec<f32> = natural.into_iter().map(|w| w + 2.0 * CELL_PAD).collect();
        let sum: f32 = natural.iter().sum();
        let share = total / n as f32;
        let narrow: f32 = natural.iter().filter(|w| **w <= share).sum();
        let wide: f32 = natural.iter().filter(|w| **w > share).sum();
        let widths: Vec<f32> = if sum <= total || wide <= 0.0 {
            natural.iter().map(|w| w * total / sum).collect()
        } else {
            // The narrow columns keep their width; the wide ones share the
            // rest in proportion (together at least an even share each).
            let room = total - narrow;
            natural.iter().map(|w| if *w <= share { *w } else { w * room / wide }).collect()
        };
        let mut x = MARGIN_X;
        let columns = widths
            .into_iter()
            .map(|w| {
                let column = (x, w);
                x += w;
                column
            })
            .collect();
        TableLayout { table, columns, right_aligned }
    }
}

/// Draws laid-out pages with krilla.
struct Painter {
    text: Text,
    fonts: [Font; 3],
}

impl Painter {
    /// A line of text from `x`, `y` its baseline: a run of glyphs per
    /// stretch of characters drawn with the same font.
    fn text(&self, surface: &mut Surface<'_>, x: f32, y: f32, style: Style, text: &str) {
        if text.is_empty() {
            return;
        }
        let text = clean(text);
        surface.set_fill(Some(style.color.fill()));
        surface.set_stroke(None);
        let mut x = x;
        let mut glyphs: Vec<KrillaGlyph> = Vec::with_capacity(text.len());
        let mut rest = text.as_ref();
        while let Some(first) = rest.chars().next() {
            let face = self.text.glyph(first, style.bold).0;
            glyphs.clear();
            let mut width = 0.0;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                let (glyph_face, glyph) = self.text.glyph(c, style.bold);
                if glyph_face != face {
                    end = i;
                    break;
                }
                glyphs.push(KrillaGlyph::new(GlyphId::new(u32::from(glyph.id)), glyph.advance, 0.0, 0.0, 0.0, i..i + c.len_utf8(), None));
                width += glyph.advance;
            }
            let (run, next) = rest.split_at(end);
            surface.draw_glyphs(Point::from_xy(x, y), &glyphs, self.fonts[face.index()].clone(), run, style.size, false);
            x += width * style.size;
            rest = next;
        }
    }

    /// A rectangle (`area`: left, top, width, height), filled and/or outlined.
    fn rect(&self, surface: &mut Surface<'_>, area: (f32, f32, f32, f32), fill: Option<Rgb>, stroke: Option<Rgb>) {
        let (x, y, width, height) = area;
        let Some(rect) = Rect::from_xywh(x, y, width, height) else { return };
        let mut builder = PathBuilder::new();
        builder.push_rect(rect);
        let Some(path) = builder.finish() else { return };
        surface.set_fill(fill.map(Rgb::fill));
        surface.set_stroke(stroke.map(|s| s.stroke(0.6)));
        surface.draw_path(&path);
    }

    fn table_header(&self, surface: &mut Surface<'_>, layout: &TableLayout<'_>, y: f32) {
        let (left, right) = table_span(layout);
        self.rect(surface, (left, y, right - left, HEADER_HEIGHT), Some(HEADER_FILL), None);
        for (i, column) in layout.table.columns.iter().enumerate() {
            self.cell(surface, layout, (i, y, HEADER_HEIGHT), &column.name, CELL_HEADER, layout.right_aligned[i]);
        }
        self.rect(surface, (left, y + HEADER_HEIGHT - 0.6, right - left, 0.6), Some(RULE), None);
    }

    fn table_rows(&self, surface: &mut Surface<'_>, layout: &TableLayout<'_>, rows: Range<usize>, y: f32) {
        let (left, right) = table_span(layout);
        let mut top = y;
        for r in rows {
            if r % 2 == 1 {
                self.rect(surface, (left, top, right - left, ROW_HEIGHT), Some(STRIPE_FILL), None);
            }
            let Some(row) = layout.table.rows.get(r) else { continue };
            for (i, column) in layout.table.columns.iter().enumerate() {
                let value = row.get(i).unwrap_or(&Value::Null);
                let text = format_value(value, &column.unit);
                let right = layout.right_aligned[i] && number(value).is_some();
                self.cell(surface, layout, (i, top, ROW_HEIGHT), &text, CELL, right);
            }
            top += ROW_HEIGHT;
        }
        self.rect(surface, (left, top - 0.4, right - left, 0.4), Some(RULE), None);
    }

    /// A cell's text (`at`: column, top, height), cut to its column with
    /// an ellipsis, aligned left or right.
    fn cell(&self, surface: &mut Surface<'_>, layout: &TableLayout<'_>, at: (usize, f32, f32), text: &str, style: Style, right: bool) {
        let (column, top, height) = at;
        let Some(&(x, width)) = layout.columns.get(column) else { return };
        let room = width - 2.0 * CELL_PAD;
        if room <= 0.0 {
            return;
        }
        let text = self.text.fit(&clean(text), style, room);
        let baseline = top + height / 2.0 + style.size * 0.36;
        let left = if right { x + width - CELL_PAD - self.text.width(&text, style) } else { x + CELL_PAD };
        self.text(surface, left, baseline, style, &text);
    }
}

fn table_span(layout: &TableLayout<'_>) -> (f32, f32) {
    let left = layout.columns.first().map_or(MARGIN_X, |c| c.0);
    let right = layout.columns.last().map_or(MARGIN_X, |c| c.0 + c.1);
    (left, right)
}

/// The PDF of a report.
pub fn render(doc: &Document) -> Result<Vec<u8>, RenderError> {
    let fonts = fonts::get()?;
    let (page_width, page_height) = match doc.page_size {
        PageSize::A4 => (595.0, 842.0),
        PageSize::Letter => (612.0, 792.0),
    };
    let mut layout = Layout { text: Text { fonts }, page_width, page_height, pages: Vec::new(), y: MARGIN_TOP, tables: Vec::new(), bookmarks: Vec::new() };
    layout.new_page();
    layout.title_page(doc);
    if !doc.kpis.is_empty() || !doc.sections.is_empty() {
        layout.new_page();
    }
    layout.kpis(doc);
    for section in &doc.sections {
        layout.section(section)?;
    }

    let font = |face: Face| Font::new(Data::from(fonts.data(face)), 0).ok_or_else(|| RenderError::Fonts(format!("krilla cannot read {face:?}")));
    let painter = Painter { text: Text { fonts }, fonts: [font(Face::Sans)?, font(Face::SansBold)?, font(Face::Fallback)?] };
    let settings = PageSettings::from_wh(page_width, page_height).ok_or_else(|| RenderError::Pdf("bad page size".to_string()))?;
    let mut pdf = PdfDocument::new();
    let page_count = layout.pages.len();
    let footer_title = layout.text.fit(&clean(&doc.title), SMALL_MUTED, layout.content_width() * 0.6);
    for (number, items) in layout.pages.iter().enumerate() {
        let mut page = pdf.start_page_with(settings.clone());
        let mut surface = page.surface();
        for item in items {
            match item {
                Item::Text { x, y, style, text } => painter.text(&mut surface, *x, *y, *style, text),
                Item::Rect { x, y, width, height, fill, stroke } => painter.rect(&mut surface, (*x, *y, *width, *height), *fill, *stroke),
                Item::Chart { x, y, width, height, tree } => {
                    let size = Size::from_wh(*width, *height).ok_or_else(|| RenderError::Pdf("bad chart size".to_string()))?;
                    surface.push_transform(&Transform::from_translate(*x, *y));
                    surface.draw_svg(tree, size, SvgSettings::default()).ok_or_else(|| RenderError::Pdf("drawing a chart failed".to_string()))?;
                    surface.pop();
                }
                Item::TableHeader { table, y } => {
                    if let Some(table) = layout.tables.get(*table) {
                        painter.table_header(&mut surface, table, *y);
                    }
                }
                Item::TableRows { table, rows, y } => {
                    if let Some(table) = layout.tables.get(*table) {
                        painter.table_rows(&mut surface, table, rows.clone(), *y);
                    }
                }
            }
        }
        // The footer: the report's title, and where in it the page is.
        let footer_y = page_height - MARGIN_BOTTOM + 30.0;
        painter.rect(&mut surface, (MARGIN_X, footer_y - 12.0, page_width - 2.0 * MARGIN_X, 0.5), Some(RULE), None);
        painter.text(&mut surface, MARGIN_X, footer_y, SMALL_MUTED, &footer_title);
        let page_label = format!("Page {} of {page_count}", number + 1);
        let label_x = page_width - MARGIN_X - painter.text.width(&page_label, SMALL_MUTED);
        painter.text(&mut surface, label_x, footer_y, SMALL_MUTED, &page_label);
        surface.finish();
        page.finish();
    }

    let mut outline = Outline::new();
    for bookmark in &layout.bookmarks {
        outline.push_child(OutlineNode::new(bookmark.title.clone(), XyzDestination::new(bookmark.page, Point::from_xy(0.0, bookmark.y))));
    }
    pdf.set_outline(outline);
    let at = doc.generated_at;
    let created = DateTime::new(at.year().clamp(0, u16::MAX.into()) as u16)
        .month(at.month() as u8)
        .day(at.day() as u8)
        .hour(at.hour() as u8)
        .minute(at.minute() as u8)
        .second(at.second() as u8)
        .utc_offset_hour(0)
        .utc_offset_minute(0);
    pdf.set_metadata(Metadata::new().title(doc.title.clone()).creation_date(created).creator("Keel reports".to_string()));
    pdf.finish().map_err(|e| RenderError::Pdf(e.to_string()))
}
