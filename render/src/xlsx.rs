//! The XLSX of a report, written with rust_xlsxwriter.
//!
//! A "Summary" sheet (title, description, data range, when and for whom it
//! was generated, the parameters, the KPIs), then a sheet per section: its
//! table with a bold, frozen header row and numbers as numbers (money in
//! currency units, percentages as ratios, each with its number format),
//! and, when the section has a chart, a native Excel chart beside the data
//! that refers to the sheet's cells. A chart pivoted by a series column
//! (or a pie of several series' totals) refers to a block of its data
//! written to the right of the table, one row per x value and one column
//! per series.
//!
//! A sheet with a chart is kept in memory until the workbook is written:
//! Excel wants a chart's cached values in the file and rust_xlsxwriter
//! reads them from the sheet's cells then (a sheet of ~100,000 rows takes
//! ~20 MB). A sheet without one is written in rust_xlsxwriter's low-memory
//! mode: each row goes to a temporary file once the next one starts, with
//! only the shared strings held, so a long table costs little memory.

use std::collections::HashSet;

use rust_xlsxwriter::{Chart, ChartType, Format, FormatBorder, Workbook, Worksheet};
use serde_json::Value;

use crate::chart::{self, ChartData};
use crate::format::{number, plain, shown_number};
use crate::{ChartKind, Document, RenderError, Section, Unit};

/// Excel's longest sheet name, in UTF-16 units.
const SHEET_NAME_MAX: usize = 31;
/// Excel's longest cell text, in characters.
const CELL_TEXT_MAX: usize = 32_767;
/// Excel's most series in one chart.
const CHART_SERIES_MAX: usize = 255;
/// Rows looked at to size a sheet's columns.
const MEASURED_ROWS: usize = 200;
/// A native chart's size in pixels.
const CHART_WIDTH: u32 = 720;
const CHART_HEIGHT: u32 = 360;

/// The number formats cells are written with.
struct Formats {
    title: Format,
    bold: Format,
    header: Format,
    count: Format,
    number: Format,
    percent: Format,
    change: Format,
}

impl Formats {
    fn new() -> Formats {
        Formats {
            title: Format::new().set_bold().set_font_size(16),
            bold: Format::new().set_bold(),
            header: Format::new().set_bold().set_border_bottom(FormatBorder::Thin).set_background_color("#EBEFF4"),
            count: Format::new().set_num_format("#,##0"),
            number: Format::new().set_num_format("#,##0.00"),
            percent: Format::new().set_num_format("0.0%"),
            change: Format::new().set_num_format("+0.0%;-0.0%;0.0%"),
        }
    }

    /// The format of a number in `unit` (none for text).
    fn of(&self, unit: &Unit) -> Option<Format> {
        match unit {
            Unit::Text => None,
            Unit::Count => Some(self.count.clone()),
            Unit::Number => Some(self.number.clone()),
            Unit::Percent => Some(self.percent.clone()),
            Unit::Money { currency } => Some(Format::new().set_num_format(money_format(currency, true))),
        }
    }
}

/// `#,##0.00 "EUR"`: the currency as literal text after the amount. Only
/// letters, digits and a few signs are kept from it, so a currency cannot
/// break out of its quotes.
fn money_format(currency: &str, decimals: bool) -> String {
    let currency: String = currency.chars().filter(|c| c.is_alphanumeric() || "€$£¥₹.- ".contains(*c)).collect();
    let amount = if decimals { "#,##0.00" } else { "#,##0" };
    let currency = currency.trim();
    if currency.is_empty() { amount.to_string() } else { format!("{amount} \"{currency}\"") }
}

/// The XLSX of a report.
pub fn render(doc: &Document) -> Result<Vec<u8>, RenderError> {
    let formats = Formats::new();
    let mut workbook = Workbook::new();
    let mut names = SheetNames::default();

    let summary_name = names.unique("Summary");
    let summary = workbook.add_worksheet();
    summary.set_name(&summary_name)?;
    write_summary(summary, doc, &formats)?;

    for (i, section) in doc.sections.iter().enumerate() {
        let name = names.unique(&section.title);
        let name = if name.is_empty() { names.unique(&format!("Section {}", i + 1)) } else { name };
        // The chart's data is read first: a chart that cannot be drawn
        // fails the report before anything of its sheet is written.
        let chart = match section.drawn_chart() {
            Some(chart) => Some((chart, chart::data(chart, &section.table)?)),
            None => None,
        };
        let sheet = if chart.is_some() { workbook.add_worksheet() } else { workbook.add_worksheet_with_low_memory()? };
        sheet.set_name(&name)?;
        write_table(sheet, section, &formats)?;
        if let Some((chart, data)) = chart {
            write_chart(sheet, &name, section, chart.kind, &chart.title, &data, &formats)?;
        }
    }
    Ok(workbook.save_to_buffer()?)
}

fn write_summary(sheet: &mut Worksheet, doc: &Document, formats: &Formats) -> Result<(), RenderError> {
    sheet.set_column_width(0, 24)?;
    sheet.set_column_width(1, 44)?;
    sheet.set_column_width(2, 14)?;
    sheet.write_string_with_format(0, 0, cell_text(&doc.title), &formats.title)?;
    let mut row = 1;
    if let Some(description) = doc.description.as_deref().filter(|d| !d.trim().is_empty()) {
        sheet.write_string(row, 0, cell_text(description))?;
        row += 1;
    }
    row += 1;
    let mut facts: Vec<(&str, String)> = Vec::new();
    if let Some((from, to)) = &doc.data_range {
        facts.push(("Data range", format!("{from} – {to}")));
    }
    facts.push(("Generated at", doc.generated_at.format("%Y-%m-%d %H:%M UTC").to_string()));
    facts.push(("Requested by", doc.requested_by.clone()));
    for (label, value) in facts {
        sheet.write_string_with_format(row, 0, label, &formats.bold)?;
        sheet.write_string(row, 1, cell_text(&value))?;
        row += 1;
    }
    if !doc.parameters.is_empty() {
        row += 1;
        sheet.write_string_with_format(row, 0, "Parameters", &formats.bold)?;
        row += 1;
        for (name, value) in &doc.parameters {
            sheet.write_string(row, 0, cell_text(name))?;
            sheet.write_string(row, 1, cell_text(value))?;
            row += 1;
        }
    }
    if !doc.kpis.is_empty() {
        row += 1;
        for (col, label) in ["Key figure", "Value", "Change"].into_iter().enumerate() {
            sheet.write_string_with_format(row, col as u16, label, &formats.header)?;
        }
        row += 1;
        for kpi in &doc.kpis {
            sheet.write_string(row, 0, cell_text(&kpi.label))?;
            if let Some(value) = kpi.value.filter(|v| v.is_finite()) {
                let value = shown_number(value, &kpi.unit);
                match formats.of(&kpi.unit) {
                    Some(format) => sheet.write_number_with_format(row, 1, value, &format)?,
                    None => sheet.write_number(row, 1, value)?,
                };
            }
            if let Some(change) = kpi.change.filter(|c| c.is_finite()) {
                sheet.write_number_with_format(row, 2, change, &formats.change)?;
            }
            row += 1;
        }
    }
    Ok(())
}

/// The section's table from A1: header row (bold, frozen), then a row per
/// row of data, in order (as the low-memory mode needs).
fn write_table(sheet: &mut Worksheet, section: &Section, formats: &Formats) -> Result<(), RenderError> {
    let table = &section.table;
    let unit_formats: Vec<Option<Format>> = table.columns.iter().map(|c| formats.of(&c.unit)).collect();
    for (col, column) in table.columns.iter().enumerate() {
        let col = column_number(col)?;
        let width = table
            .rows
            .iter()
            .take(MEASURED_ROWS)
            .map(|row| display_width(&plain(row.get(col as usize).unwrap_or(&Value::Null))))
            .chain([display_width(&column.name) + 2])
            .max()
            .unwrap_or(8);
        let width = match column.unit {
            // Formatted numbers are wider than their digits.
            Unit::Money { .. } => width + 6,
            Unit::Text => width,
            _ => width + 2,
        };
        sheet.set_column_width(col, width.clamp(8, 60) as f64)?;
        sheet.write_string_with_format(0, col, cell_text(&column.name), &formats.header)?;
    }
    if !table.columns.is_empty() {
        sheet.set_freeze_panes(1, 0)?;
    }
    for (r, row) in table.rows.iter().enumerate() {
        let r = row_number(r + 1)?;
        for (col, column) in table.columns.iter().enumerate() {
            let value = row.get(col).unwrap_or(&Value::Null);
            write_value(sheet, r, column_number(col)?, value, &column.unit, unit_formats[col].as_ref())?;
        }
    }
    Ok(())
}

/// One cell: numbers of numeric columns as numbers in their unit and
/// format, JSON numbers and booleans as such, everything else as text.
fn write_value(sheet: &mut Worksheet, row: u32, col: u16, value: &Value, unit: &Unit, format: Option<&Format>) -> Result<(), RenderError> {
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            sheet.write_boolean(row, col, *b)?;
        }
        _ => match (number(value), format) {
            (Some(n), Some(format)) => {
                sheet.write_number_with_format(row, col, shown_number(n, unit), format)?;
            }
            (Some(n), None) if value.is_number() => {
                sheet.write_number(row, col, n)?;
            }
            _ => {
                let text = plain(value);
                if !text.is_empty() {
                    sheet.write_string(row, col, cell_text(&text))?;
                }
            }
        },
    }
    Ok(())
}

/// A native chart beside the table, referring to its cells (or to a block
/// of pivoted data written to the right of it).
fn write_chart(
    sheet: &mut Worksheet,
    sheet_name: &str,
    section: &Section,
    kind: ChartKind,
    title: &str,
    data: &ChartData,
    formats: &Formats,
) -> Result<(), RenderError> {
    let table = &section.table;
    let chart_type = match kind {
        ChartKind::Line => ChartType::Line,
        ChartKind::Bar => ChartType::Column,
        ChartKind::StackedBar => ChartType::ColumnStacked,
        ChartKind::Area => ChartType::Area,
        ChartKind::Pie => ChartType::Pie,
        ChartKind::Table => return Ok(()),
    };
    if data.categories.is_empty() || data.series.is_empty() {
        return Ok(());
    }
    let mut chart = Chart::new(chart_type);
    chart.set_width(CHART_WIDTH).set_height(CHART_HEIGHT);
    let pie_of_totals = kind == ChartKind::Pie && data.series.len() > 1;
    let block_col = column_number(table.columns.len() + 1)?;

    if !data.pivoted && !pie_of_totals {
        // The table's own cells: x column as categories, a y column per series.
        let chart_ref = section.chart.as_ref();
        let x = chart_ref.and_then(|c| table.column_index(&c.x)).unwrap_or(0);
        let last = row_number(table.rows.len())?;
        let x = column_number(x)?;
        let ys: Vec<usize> = chart_ref.map(|c| c.y.iter().filter_map(|y| table.column_index(y)).collect()).unwrap_or_default();
        let ys = if kind == ChartKind::Pie { &ys[..ys.len().min(1)] } else { &ys[..] };
        for &y in ys.iter().take(CHART_SERIES_MAX) {
            let y = column_number(y)?;
            chart.add_series().set_name((sheet_name, 0, y)).set_categories((sheet_name, 1, x, last, x)).set_values((sheet_name, 1, y, last, y));
        }
    } else if pie_of_totals {
        // A slice per series, of its total.
        sheet.write_string_with_format(0, block_col, "series", &formats.header)?;
        sheet.write_string_with_format(0, block_col + 1, "total", &formats.header)?;
        let format = formats.of(&data.unit);
        let slices = data.pie_slices();
        for (i, (name, total)) in slices.iter().enumerate() {
            let row = row_number(i + 1)?;
            sheet.write_string(row, block_col, cell_text(name))?;
            match &format {
                Some(format) => sheet.write_number_with_format(row, block_col + 1, *total, format)?,
                None => sheet.write_number(row, block_col + 1, *total)?,
            };
        }
        let last = row_number(slices.len())?;
        chart.add_series().set_name((sheet_name, 0, block_col + 1)).set_categories((sheet_name, 1, block_col, last, block_col)).set_values((
            sheet_name,
            1,
            block_col + 1,
            last,
            block_col + 1,
        ));
    } else {
        // The table pivoted: a row per x value, a column per series.
        let x_name = section.chart.as_ref().map_or("x", |c| c.x.as_str());
        sheet.write_string_with_format(0, block_col, cell_text(x_name), &formats.header)?;
        let format = formats.of(&data.unit);
        for (i, category) in data.categories.iter().enumerate() {
            sheet.write_string(row_number(i + 1)?, block_col, cell_text(category))?;
        }
        let last = row_number(data.categories.len())?;
        for (k, series) in data.series.iter().enumerate() {
            let col = column_number(block_col as usize + 1 + k)?;
            sheet.write_string_with_format(0, col, cell_text(&series.name), &formats.header)?;
            for (i, value) in series.values.iter().enumerate() {
                if let Some(value) = value {
                    let row = row_number(i + 1)?;
                    match &format {
                        Some(format) => sheet.write_number_with_format(row, col, *value, format)?,
                        None => sheet.write_number(row, col, *value)?,
                    };
                }
            }
            if k < CHART_SERIES_MAX && !(kind == ChartKind::Pie && k > 0) {
                chart
                    .add_series()
                    .set_name((sheet_name, 0, col))
                    .set_categories((sheet_name, 1, block_col, last, block_col))
                    .set_values((sheet_name, 1, col, last, col));
            }
        }
    }

    // Right of the table and of any block, with a column's gap.
    let used_cols = if data.pivoted { table.columns.len() + 2 + data.series.len() } else { table.columns.len() };
    let used_cols = if pie_of_totals { table.columns.len() + 3 } else { used_cols };
    let chart_col = column_number(used_cols + 1)?;
    // A title that reads as a cell reference ("Sheet1!A1") or a formula
    // would be taken for one: such a title is written in the cell under the
    // chart's corner and the chart refers to it.
    if title.contains('!') || title.starts_with('=') {
        sheet.write_string(1, chart_col, cell_text(title))?;
        chart.title().set_name((sheet_name, 1, chart_col));
    } else {
        chart.title().set_name(title);
    }
    if kind != ChartKind::Pie {
        let axis_format = match &data.unit {
            Unit::Percent => Some("0%".to_string()),
            Unit::Money { currency } => Some(money_format(currency, false)),
            Unit::Count | Unit::Number => Some("#,##0".to_string()),
            Unit::Text => None,
        };
        if let Some(format) = axis_format {
            chart.y_axis().set_num_format(format);
        }
    }
    sheet.insert_chart(1, chart_col, &chart)?;
    Ok(())
}

fn row_number(row: usize) -> Result<u32, RenderError> {
    u32::try_from(row).map_err(|_| RenderError::Xlsx(rust_xlsxwriter::XlsxError::RowColumnLimitError))
}

fn column_number(col: usize) -> Result<u16, RenderError> {
    u16::try_from(col).map_err(|_| RenderError::Xlsx(rust_xlsxwriter::XlsxError::RowColumnLimitError))
}

/// Text as a cell can hold it: at most Excel's 32,767 characters.
fn cell_text(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(CELL_TEXT_MAX) {
        None => text.into(),
        Some((end, _)) => {
            let cut = text[..end].char_indices().nth(CELL_TEXT_MAX - 1).map_or(end, |(i, _)| i);
            format!("{}…", &text[..cut]).into()
        }
    }
}

/// Roughly how many character widths `text` takes in a cell: East Asian
/// wide characters take two.
fn display_width(text: &str) -> usize {
    text.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

fn is_wide(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x20000..=0x3FFFD)
}

/// Sheet names as Excel takes them: at most 31 UTF-16 units, none of
/// `[]:*?/\`, not starting or ending with an apostrophe, and unique
/// regardless of case.
#[derive(Default)]
struct SheetNames {
    taken: HashSet<String>,
}

impl SheetNames {
    /// A valid, unused name as close to `wanted` as can be ("Sales",
    /// "Sales (2)", …); empty when nothing of `wanted` is left.
    fn unique(&mut self, wanted: &str) -> String {
        let cleaned: String = wanted.chars().map(|c| if "[]:*?/\\".contains(c) || c.is_control() { ' ' } else { c }).collect();
        let cleaned = cleaned.trim().trim_matches('\'').trim();
        if cleaned.is_empty() {
            return String::new();
        }
        // "History" is reserved by Excel for its change tracking.
        self.taken.insert("history".to_string());
        let mut n = 1;
        loop {
            let suffix = if n == 1 { String::new() } else { format!(" ({n})") };
            let base = truncate_utf16(cleaned, SHEET_NAME_MAX - suffix.len());
            let name = format!("{}{suffix}", base.trim_end().trim_end_matches('\''));
            if self.taken.insert(name.to_lowercase()) {
                return name;
            }
            n += 1;
        }
    }
}

fn truncate_utf16(text: &str, max: usize) -> &str {
    let mut units = 0;
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > max {
            return &text[..i];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names_are_valid_and_unique() {
        let mut names = SheetNames::default();
        assert_eq!(names.unique("Summary"), "Summary");
        assert_eq!(names.unique("summary"), "summary (2)");
        assert_eq!(names.unique("Q1: revenue [EUR] / cost?"), "Q1  revenue  EUR    cost");
        assert_eq!(names.unique("'quoted'"), "quoted");
        assert_eq!(names.unique("History"), "History (2)");
        let long = "A very long section title that Excel would refuse";
        let first = names.unique(long);
        let second = names.unique(long);
        assert_eq!(first, "A very long section title that");
        assert!(second.ends_with(" (2)") && second.encode_utf16().count() <= 31, "{second}");
        assert_eq!(names.unique("[]"), "");
        let cjk = names.unique(&"売上".repeat(20));
        assert!(cjk.encode_utf16().count() <= 31);
    }

    #[test]
    fn currencies_stay_inside_their_quotes() {
        assert_eq!(money_format("EUR", true), "#,##0.00 \"EUR\"");
        assert_eq!(money_format("E\"U;R", false), "#,##0 \"EUR\"");
        assert_eq!(money_format("", true), "#,##0.00");
    }

    #[test]
    fn long_text_is_cut_to_a_cell() {
        let long = "x".repeat(CELL_TEXT_MAX + 10);
        assert_eq!(cell_text(&long).chars().count(), CELL_TEXT_MAX);
        assert_eq!(cell_text("short"), "short");
    }
}
