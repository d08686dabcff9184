//! The PDF: its text read back with `pdftotext`, its pages drawn with
//! `pdftoppm`.

use std::path::Path;
use std::process::Command;

use keel_render::chart::{self, ChartData};
use keel_render::{ChartKind, Document, PageSize, RenderError, pdf};

use crate::common::{self, NON_LATIN};

/// Runs a poppler tool, failing the test with a hint when it is missing.
fn poppler(tool: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} could not run ({e}): install poppler-utils (apt-get install -y poppler-utils)"));
    assert!(output.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn write(dir: &Path, pdf: &[u8]) -> String {
    let path = dir.join("report.pdf");
    std::fs::write(&path, pdf).unwrap();
    path.to_str().unwrap().to_string()
}

/// The text of each page, whitespace runs as one space: in reading order,
/// or (`layout`) line by line as laid out, which keeps a table's row on one
/// line.
fn pages_text(path: &str, layout: bool) -> Vec<String> {
    let args: &[&str] = if layout { &["-layout", "-enc", "UTF-8", path, "-"] } else { &["-enc", "UTF-8", path, "-"] };
    let text = String::from_utf8(poppler("pdftotext", args)).unwrap();
    let mut pages: Vec<String> = text.split('\u{c}').map(squash).collect();
    // The text ends with a form feed after the last page.
    if pages.last().is_some_and(|p| p.is_empty()) {
        pages.pop();
    }
    pages
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a reader must find of a chart: its title, its x values (or slice
/// names) and its series names.
fn chart_labels(kind: ChartKind, title: &str, data: &ChartData) -> Vec<String> {
    let mut labels = vec![title.to_string()];
    if kind == ChartKind::Pie {
        labels.extend(data.pie_slices().into_iter().map(|(name, _)| name));
    } else {
        labels.extend(data.categories.iter().cloned());
        labels.extend(data.series.iter().map(|s| s.name.clone()));
    }
    labels
}

#[test]
fn the_sample_reads_back() {
    let doc = common::sample();
    let bytes = pdf::render(&doc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &bytes);
    let pages = pages_text(&path, false);
    let all = pages.join("\n");
    let n = pages.len();
    assert!(n > 100, "10,000 rows take well over 100 pages, not {n}");

    // Charts are vector graphics with real text: every label reads back.
    let raw = String::from_utf8_lossy(&bytes);
    assert!(raw.contains("/FontFile2"), "the PDF's dictionaries are readable, so the image check below means something");
    assert!(raw.contains("/Subtype/Type0") || raw.contains("/Subtype /Type0"), "the check below would see a subtype");
    assert!(!raw.contains("/Subtype/Image") && !raw.contains("/Subtype /Image"), "no chart is embedded as an image");
    for section in &doc.sections {
        let Some(chart) = section.drawn_chart() else { continue };
        let data = chart::data(chart, &section.table).unwrap();
        for label in chart_labels(chart.kind, &chart.title, &data) {
            assert!(all.contains(&squash(&label)), "{:?} chart label {label:?} is not in the text", chart.kind);
        }
        assert!(all.contains(&section.title), "section {:?}", section.title);
    }
    // The pivoted chart has a series per country, the non-Latin ones too.
    for country in common::COUNTRIES {
        assert!(all.contains(country), "{country}");
    }

    // Title page, KPIs, text in any script.
    let first = &pages[0];
    for text in ["Sales report 2024", "2024-01-01 – 2024-12-31", "2025-01-02 03:04 UTC", "ana@example.com", "Währung", NON_LATIN, "Page 1 of"] {
        assert!(first.contains(text), "title page: {text:?} in {first:?}");
    }
    for kpi in common::kpis() {
        assert!(pages[1].contains(&kpi.label), "KPI {:?}", kpi.label);
    }
    for text in ["123,456.78 EUR", "4,321", "3.5 %", "45.68", "+12.5 %", "-3.0 %"] {
        assert!(pages[1].contains(text), "KPI value {text:?} in {:?}", pages[1]);
    }
    for text in ["顧客 1", "Клиент 2", "ORD-009999", "Customer 0 with a rather", "…"] {
        assert!(all.contains(text), "{text:?}");
    }
    // Numbers formatted per unit in the tables.
    for text in ["10,000.00 EUR", "2.1 %", "0.14"] {
        assert!(all.contains(text), "{text:?}");
    }

    // The long table's header is repeated on every page it runs over.
    let header = "order customer amount discount items weight";
    let with_header = pages_text(&path, true).iter().filter(|p| p.contains(header)).count();
    assert!(with_header > 100, "header on {with_header} pages");
    assert!(pages.iter().any(|p| p.contains("All orders (continued)")));
    assert!(pages.last().unwrap().contains(&format!("Page {n} of {n}")));

    // Metadata.
    let info = String::from_utf8(poppler("pdfinfo", &[&path])).unwrap();
    assert!(info.contains("Sales report 2024"), "{info}");
    assert!(info.contains("2025"), "{info}");
    assert!(info.contains("595 x 842"), "{info}");

    // No page is blank.
    poppler("pdftoppm", &["-r", "30", "-png", &path, dir.path().join("page").to_str().unwrap()]);
    let mut images: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "png")).collect();
    images.sort();
    assert_eq!(images.len(), n);
    for image in images {
        let inked = crate::png::inked_pixels(&std::fs::read(&image).unwrap());
        // The footer alone inks about 100 pixels at 30 dpi.
        assert!(inked > 300, "{} has {inked} non-white pixels", image.display());
    }
}

#[test]
fn letter_pages_and_an_empty_report() {
    let doc = Document { page_size: PageSize::Letter, kpis: Vec::new(), sections: vec![common::channels()], ..common::sample() };
    let bytes = pdf::render(&doc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &bytes);
    let info = String::from_utf8(poppler("pdfinfo", &[&path])).unwrap();
    assert!(info.contains("612 x 792"), "{info}");

    let empty = Document { kpis: Vec::new(), sections: Vec::new(), description: None, parameters: Vec::new(), data_range: None, ..common::sample() };
    let path = write(dir.path(), &pdf::render(&empty).unwrap());
    let pages = pages_text(&path, false);
    assert_eq!(pages.len(), 1);
    assert!(pages[0].contains("Sales report 2024") && pages[0].contains("Page 1 of 1"));
}

#[test]
fn a_chart_of_a_missing_column_is_an_error() {
    let mut section = common::monthly();
    if let Some(chart) = section.chart.as_mut() {
        chart.y.push("profit".to_string());
    }
    let err = pdf::render(&common::document(vec![section])).unwrap_err();
    assert!(matches!(&err, RenderError::UnknownColumn { column, .. } if column == "profit"), "{err}");

    let mut section = common::monthly();
    section.table.rows[3][2] = serde_json::json!("many");
    let err = pdf::render(&common::document(vec![section])).unwrap_err();
    assert!(matches!(&err, RenderError::NotANumber { row: 4, .. }), "{err}");
}
