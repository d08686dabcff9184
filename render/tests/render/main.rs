//! Renders sample reports and reads them back: the PDF with poppler's
//! `pdftotext` and `pdftoppm`, the PNGs with the `png` crate, the XLSX as
//! the zip of XML it is.

mod bench;
mod common;
mod pdf;
mod png;
mod xlsx;
