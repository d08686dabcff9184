//! The XLSX, read as the zip of XML files it is.

use std::collections::BTreeMap;
use std::io::Read;

use keel_render::xlsx;

use crate::common::{self, NON_LATIN};

/// Every file of the zip, as text.
fn unzip(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        files.insert(file.name().unwrap().to_string(), text);
    }
    files
}

#[test]
fn the_sample_has_native_charts_and_number_formats() {
    let files = unzip(&xlsx::render(&common::sample()).unwrap());

    // A chart per drawn chart, in the order of the sections.
    let chart = |n: usize| files.get(&format!("xl/charts/chart{n}.xml")).unwrap_or_else(|| panic!("chart{n}.xml in {:?}", files.keys()));
    assert!(chart(1).contains("<c:lineChart>"), "line");
    assert!(chart(2).contains("<c:barChart>") && chart(2).contains(r#"<c:grouping val="stacked"/>"#), "stacked bar");
    assert!(chart(3).contains("<c:pieChart>"), "pie");
    assert!(chart(4).contains("<c:areaChart>"), "area");
    assert!(!files.contains_key("xl/charts/chart5.xml"), "the table-only section has no chart");

    // The line chart refers to the sheet's own columns (money in B, orders in C).
    assert!(chart(1).contains("'Monthly revenue'!$A$2:$A$13"), "{}", chart(1));
    assert!(chart(1).contains("'Monthly revenue'!$B$2:$B$13") && chart(1).contains("'Monthly revenue'!$C$2:$C$13"));
    // The pivoted chart refers to the block right of the table: months in E,
    // a column per country from F.
    for (col, country) in ["F", "G", "H", "I"].iter().zip(common::COUNTRIES) {
        assert!(chart(2).contains(&format!("'Revenue by country'!${col}$2:${col}$13")), "{country} in {col}");
        assert!(chart(2).contains(country), "{country}");
    }
    assert!(chart(2).contains("'Revenue by country'!$E$2:$E$13"));

    // Sheets: the summary, then one per section, named after it.
    let workbook = &files["xl/workbook.xml"];
    for name in ["Summary", "Monthly revenue", "Revenue by country", "Channels", "Conversion", "All orders"] {
        assert!(workbook.contains(&format!(r#"name="{name}""#)), "sheet {name}");
    }

    // Number formats: money in currency units, percentages, counts.
    let styles = &files["xl/styles.xml"];
    for format in [r#"#,##0.00 &quot;EUR&quot;"#, "0.0%", "#,##0", "+0.0%;-0.0%;0.0%"] {
        assert!(styles.contains(&format!(r#"formatCode="{format}""#)), "format {format} in {styles}");
    }

    // The header row is frozen, bold (its own style) and the values are
    // numbers: 1,000,000 cents are 10,000 EUR.
    let monthly = &files["xl/worksheets/sheet2.xml"];
    assert!(monthly.contains(r#"<pane ySplit="1" topLeftCell="A2""#), "{monthly}");
    assert!(monthly.contains("<v>10000</v>"), "money in currency units");
    let orders = &files["xl/worksheets/sheet6.xml"];
    assert!(orders.contains(r#"<pane ySplit="1""#));
    assert!(orders.contains(r#"<row r="10001""#), "10,000 rows and a header");

    let strings = &files["xl/sharedStrings.xml"];
    for text in [NON_LATIN, "Sales report 2024", "Revenue", "Währung", "顧客 1", "Україна"] {
        assert!(strings.contains(text), "{text}");
    }
}

#[test]
fn a_report_without_sections_is_a_summary() {
    let doc = keel_render::Document { sections: Vec::new(), ..common::sample() };
    let files = unzip(&xlsx::render(&doc).unwrap());
    assert!(files.contains_key("xl/worksheets/sheet1.xml"));
    assert!(!files.contains_key("xl/worksheets/sheet2.xml"));
    assert!(!files.keys().any(|f| f.starts_with("xl/charts/")));
}
