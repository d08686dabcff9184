//! Charts as PNGs: the right size, not blank, and their text drawn.

use keel_render::{ChartKind, RenderError, chart};

use crate::common;

/// Pixels of a PNG that are not (nearly) white.
pub fn inked_pixels(png: &[u8]) -> usize {
    let (info, pixels) = decode(png);
    let channels = info.color_type.samples();
    pixels.chunks(channels).filter(|p| p.iter().take(3).any(|v| *v < 235)).count()
}

fn decode(png: &[u8]) -> (png::OutputInfo, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    pixels.truncate(info.buffer_size());
    (info, pixels)
}

#[test]
fn charts_draw_as_pngs() {
    for section in [common::monthly(), common::by_country(), common::channels(), common::conversion()] {
        let chart = section.chart.as_ref().unwrap();
        let svg = chart::svg(chart, &section.table).unwrap();
        let png = chart::png(&svg, 1.0).unwrap();
        let (info, _) = decode(&png);
        assert_eq!((info.width, info.height), (800, 400));
        let inked = inked_pixels(&png);
        assert!(inked > 10_000, "{:?}: {inked} inked pixels", chart.kind);

        let (info, _) = decode(&chart::png(&svg, 2.0).unwrap());
        assert_eq!((info.width, info.height), (1600, 800));
    }
}

/// resvg leaves out, without an error, text whose font it cannot find: a
/// chart drawn with and without a label must differ, in every script.
#[test]
fn labels_are_drawn() {
    let mut section = common::channels();
    for title in ["Sessions", "売上", "Выручка"] {
        let chart = section.chart.as_mut().unwrap();
        chart.title = title.to_string();
        let with = chart::png(&chart::svg(chart, &section.table).unwrap(), 1.0).unwrap();
        chart.title = String::new();
        let without = chart::png(&chart::svg(chart, &section.table).unwrap(), 1.0).unwrap();
        assert!(inked_pixels(&with) > inked_pixels(&without) + 50, "title {title:?} is not drawn");
    }

    // Text in a family that is not compiled in is drawn in DejaVu Sans.
    let svg = |text: &str| {
        format!(
            r#"<svg width="200" height="50" xmlns="http://www.w3.org/2000/svg"><text x="10" y="30" font-size="20" font-family="Roboto, Helvetica">{text}</text></svg>"#
        )
    };
    let with = chart::png(&svg("Hello 世界"), 1.0).unwrap();
    let without = chart::png(&svg(""), 1.0).unwrap();
    assert_eq!(inked_pixels(&without), 0);
    assert!(inked_pixels(&with) > 100);
}

#[test]
fn bad_input_is_an_error() {
    let section = common::channels();
    let chart = section.chart.as_ref().unwrap();
    let svg = chart::svg(chart, &section.table).unwrap();
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY, 1000.0] {
        assert!(matches!(chart::png(&svg, scale), Err(RenderError::BadScale { .. })), "scale {scale}");
    }
    assert!(matches!(chart::png("<svg", 1.0), Err(RenderError::Svg(_))));

    let mut table_chart = chart.clone();
    table_chart.kind = ChartKind::Table;
    assert!(matches!(chart::svg(&table_chart, &section.table), Err(RenderError::NotDrawn { .. })));
}

#[test]
fn long_series_are_drawn() {
    // 400 days: the x labels are thinned out, not drawn over each other.
    let rows = (0..400).map(|i| vec![serde_json::json!(format!("day {i}")), serde_json::json!(i * i)]).collect();
    let table = keel_render::Table {
        columns: vec![
            keel_render::TableColumn { name: "day".to_string(), unit: keel_render::Unit::Text },
            keel_render::TableColumn { name: "users".to_string(), unit: keel_render::Unit::Count },
        ],
        rows,
    };
    let chart = keel_render::Chart { kind: ChartKind::Line, title: "Users".to_string(), x: "day".to_string(), y: vec!["users".to_string()], series: None };
    let svg = chart::svg(&chart, &table).unwrap();
    let shown = (0..400).filter(|i| svg.contains(&format!(">\nday {i}\n<"))).count();
    assert!((5..=40).contains(&shown), "{shown} of 400 x labels shown");
    assert!(inked_pixels(&chart::png(&svg, 1.0).unwrap()) > 5_000);
}

#[test]
fn empty_tables_draw_no_data() {
    for kind in [ChartKind::Line, ChartKind::Bar, ChartKind::StackedBar, ChartKind::Area, ChartKind::Pie] {
        let mut section = common::monthly();
        section.table.rows.clear();
        let chart = section.chart.as_mut().unwrap();
        chart.kind = kind;
        let svg = chart::svg(chart, &section.table).unwrap();
        assert!(svg.contains("No data"), "{kind:?}: {svg}");
        chart::png(&svg, 1.0).unwrap();

        let doc = common::document(vec![section]);
        keel_render::pdf::render(&doc).unwrap();
        keel_render::xlsx::render(&doc).unwrap();
    }
}
