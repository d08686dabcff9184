//! XLSX exports with `rust_xlsxwriter` in constant-memory mode: each row is
//! written to a temporary file as it arrives (no cell is kept in memory),
//! and the finished workbook is saved to a temporary file that the caller
//! streams to S3. A sheet holds at most 1,048,576 rows; more continue on
//! the next sheet, each with the header row.

use std::path::PathBuf;

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};
use shared::domain::export::{Cell, Header};
use shared::platform::error::{Error, Result};

/// Rows per sheet (Excel's limit), header included.
const SHEET_ROWS: u32 = 1_048_576;
/// Excel's longest cell text.
const MAX_CELL_CHARS: usize = 32_767;

fn xlsx(e: XlsxError) -> Error {
    Error::internal(format!("xlsx: {e}"))
}

pub struct XlsxSink {
    workbook: Workbook,
    sheet: Worksheet,
    sheets: usize,
    row: u32,
    header: Header,
    bold: Format,
    dir: tempfile::TempDir,
}

impl XlsxSink {
    pub fn new(header: &Header) -> Result<XlsxSink> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(format!("xlsx temp dir: {e}")))?;
        let mut workbook = Workbook::new();
        workbook.set_tempdir(dir.path()).map_err(xlsx)?;
        let sheet = workbook.new_worksheet_with_constant_memory().map_err(xlsx)?;
        let mut sink = XlsxSink { workbook, sheet, sheets: 1, row: 0, header: header.clone(), bold: Format::new().set_bold(), dir };
        sink.start_sheet()?;
        Ok(sink)
    }

    fn start_sheet(&mut self) -> Result<()> {
        let base: String = self.header.table.chars().take(25).collect();
        let name = if self.sheets == 1 { base } else { format!("{base}_{}", self.sheets) };
        self.sheet.set_name(name).map_err(xlsx)?;
        for (col, (name, _)) in self.header.columns.iter().enumerate() {
            self.sheet.write_string_with_format(0, col as u16, name, &self.bold).map_err(xlsx)?;
        }
        self.row = 1;
        Ok(())
    }

    pub fn row(&mut self, cells: &[Cell]) -> Result<()> {
        if self.row >= SHEET_ROWS {
            let next = self.workbook.new_worksheet_with_constant_memory().map_err(xlsx)?;
            let full = std::mem::replace(&mut self.sheet, next);
            self.workbook.push_worksheet(full);
            self.sheets += 1;
            self.start_sheet()?;
        }
        for (col, cell) in cells.iter().enumerate() {
            let col = col as u16;
            match cell {
                Cell::Null => {}
                // Strings are stored as text, never as formulas.
                Cell::Text(t) if t.chars().count() > MAX_CELL_CHARS => {
                    let cut: String = t.chars().take(MAX_CELL_CHARS).collect();
                    self.sheet.write_string(self.row, col, cut).map_err(xlsx)?;
                }
                Cell::Text(t) => {
                    self.sheet.write_string(self.row, col, t).map_err(xlsx)?;
                }
                Cell::Int(n) => {
                    self.sheet.write_number(self.row, col, *n as f64).map_err(xlsx)?;
                }
            }
        }
        self.row += 1;
        Ok(())
    }

    /// Save the workbook; the file lives as long as the returned guard.
    pub fn finish(mut self) -> Result<(PathBuf, tempfile::TempDir)> {
        let last = std::mem::replace(&mut self.sheet, Worksheet::new());
        self.workbook.push_worksheet(last);
        let path = self.dir.path().join("export.xlsx");
        self.workbook.save(&path).map_err(xlsx)?;
        drop(self.workbook);
        Ok((path, self.dir))
    }
}
