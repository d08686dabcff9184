//! How long reports take to render, printed (`--nocapture`), not asserted:
//! times in a debug build say little about a release one.

use std::time::Instant;

use keel_render::{pdf, xlsx};

use crate::common;

fn time(what: &str, render: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let start = Instant::now();
    let bytes = render();
    println!("{what}: {:.0} ms, {} KB", start.elapsed().as_secs_f64() * 1000.0, bytes.len() / 1024);
    bytes
}

#[test]
fn render_times() {
    // Fonts are inflated once per process: that first cost is apart.
    time("first render (inflates the fonts)", || pdf::render(&common::document(vec![common::channels()])).unwrap());

    let ten_charts = common::document((0..10).map(|i| [common::monthly, common::by_country, common::channels, common::conversion][i % 4]()).collect());
    let pdf = time("PDF, 10 charts", || pdf::render(&ten_charts).unwrap());
    assert!(pdf.starts_with(b"%PDF"));
    time("XLSX, 10 charts", || xlsx::render(&ten_charts).unwrap());

    let big = common::document(vec![common::monthly(), common::by_country(), common::channels(), common::orders(10_000)]);
    let pdf = time("PDF, 3 charts + 10,000 rows", || pdf::render(&big).unwrap());
    assert!(pdf.starts_with(b"%PDF"));
    time("XLSX, 3 charts + 10,000 rows", || xlsx::render(&big).unwrap());
}
