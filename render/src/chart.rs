//! Charts: a section's table as series ([`data`]), drawn as SVG with
//! charts-rs ([`svg`]), and that SVG as a PNG with resvg ([`png`]).
//!
//! Every text of a chart is written in DejaVu Sans (registered with
//! charts-rs so labels are laid out with the widths they are drawn with),
//! and the SVG is read back with the compiled-in fonts only
//! ([`crate::fonts::database`]), so a chart looks the same in a PNG, in the
//! PDF and wherever it is rendered.

use std::collections::HashMap;

use charts_rs::{AxisLabelOverflow, BarChart, LineChart, PieChart, Series, Symbol};
use resvg::tiny_skia;
use resvg::usvg;
use serde_json::Value;

use crate::format::{is_blank, number, plain, shown_number};
use crate::{Chart, ChartKind, RenderError, Table, Unit, fonts};

/// Size of a chart's SVG, in SVG pixels.
pub const WIDTH: f32 = 800.0;
pub const HEIGHT: f32 = 400.0;

/// Past this many x values a line's points get no markers (they would
/// merge into a thick line); its x labels are thinned out by charts-rs at
/// any length so that they never overlap.
const MARKERS_UP_TO: usize = 60;

/// Largest PNG [`png`] makes, in pixels (a 4x render of a chart is 5.1
/// million): a bigger one is more likely a mistaken scale than a need.
const MAX_PIXELS: f32 = 40_000_000.0;

/// A chart's data: the x values and one list of values per series, in
/// the units they are shown in (money in currency units, percentages as
/// ratios).
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    /// The x values, in the order they first appear in the table.
    pub categories: Vec<String>,
    pub series: Vec<SeriesData>,
    /// The unit of the values (of the first y column).
    pub unit: Unit,
    /// Whether the series are the values of the chart's series column
    /// (the table pivoted x × series) rather than its y columns.
    pub pivoted: bool,
}

/// One series: its name and a value per category (`None`: no value).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

impl ChartData {
    /// The slices of a pie: with one series, one slice per x value; with
    /// several, one per series, of its total. Slices that are not positive
    /// cannot be drawn and are left out.
    pub fn pie_slices(&self) -> Vec<(String, f64)> {
        let slices: Vec<(String, f64)> = match self.series.as_slice() {
            [only] => self.categories.iter().zip(&only.values).map(|(name, value)| (name.clone(), value.unwrap_or(0.0))).collect(),
            several => several.iter().map(|s| (s.name.clone(), s.values.iter().flatten().sum())).collect(),
        };
        slices.into_iter().filter(|(_, value)| *value > 0.0).collect()
    }
}

/// The series a chart draws from its table.
///
/// Without a series column, each y column is a series with a value per
/// row (x values as they come, repeats included; an empty cell is a gap).
/// With one, each distinct value of it is a series (one per y column and
/// value when there are several y columns) over the distinct x values in
/// the order they first appear: the values of rows with the same x and
/// series are added up, and an x a series has no row for is 0.
///
/// Values are JSON numbers or strings that read as numbers; any other
/// value (but null or an empty string) is an error.
pub fn data(chart: &Chart, table: &Table) -> Result<ChartData, RenderError> {
    let column = |name: &str| table.column_index(name).ok_or_else(|| RenderError::UnknownColumn { chart: chart.title.clone(), column: name.to_string() });
    let x = column(&chart.x)?;
    let ys = chart.y.iter().map(|name| column(name)).collect::<Result<Vec<_>, _>>()?;
    let Some(&first_y) = ys.first() else {
        return Err(RenderError::NoValues { chart: chart.title.clone() });
    };
    let unit = table.columns[first_y].unit.clone();
    let cell = |row: &[Value], index: usize| -> Result<Option<f64>, RenderError> {
        let value = row.get(index).unwrap_or(&Value::Null);
        if is_blank(value) {
            return Ok(None);
        }
        match number(value) {
            Some(n) => Ok(Some(shown_number(n, &table.columns[index].unit))),
            None => Err(RenderError::NotANumber { chart: chart.title.clone(), column: table.columns[index].name.clone(), row: 0, value: plain(value) }),
        }
    };
    // The row an error is in, counted from 1 as a reader would.
    let at_row = |row: usize| {
        move |error: RenderError| match error {
            RenderError::NotANumber { chart, column, value, .. } => RenderError::NotANumber { chart, column, row: row + 1, value },
            other => other,
        }
    };
    let label = |row: &[Value], index: usize| plain(row.get(index).unwrap_or(&Value::Null));

    let Some(series_name) = &chart.series else {
        let categories = table.rows.iter().map(|row| label(row, x)).collect();
        let mut series = Vec::with_capacity(ys.len());
        for &y in &ys {
            let values = table.rows.iter().enumerate().map(|(i, row)| cell(row, y).map_err(at_row(i))).collect::<Result<Vec<_>, _>>()?;
            series.push(SeriesData { name: table.columns[y].name.clone(), values });
        }
        return Ok(ChartData { categories, series, unit, pivoted: false });
    };

    let s = column(series_name)?;
    let mut categories: Vec<String> = Vec::new();
    let mut category_index: HashMap<String, usize> = HashMap::new();
    let mut keys: Vec<String> = Vec::new();
    let mut key_index: HashMap<String, usize> = HashMap::new();
    // (category, series key, y) → sum, gathered before the number of
    // categories is known.
    let mut sums: HashMap<(usize, usize, usize), f64> = HashMap::new();
    for (i, row) in table.rows.iter().enumerate() {
        let category = label(row, x);
        let c = *category_index.entry(category.clone()).or_insert_with(|| {
            categories.push(category);
            categories.len() - 1
        });
        let key = label(row, s);
        let k = *key_index.entry(key.clone()).or_insert_with(|| {
            keys.push(key);
            keys.len() - 1
        });
        for (j, &y) in ys.iter().enumerate() {
            if let Some(value) = cell(row, y).map_err(at_row(i))? {
                *sums.entry((c, k, j)).or_insert(0.0) += value;
            }
        }
    }
    let mut series = Vec::with_capacity(keys.len() * ys.len());
    for (k, key) in keys.iter().enumerate() {
        for (j, &y) in ys.iter().enumerate() {
            let key = if key.trim().is_empty() { "(empty)" } else { key.as_str() };
            let name = if ys.len() == 1 { key.to_string() } else { format!("{key} ({})", table.columns[y].name) };
            let values = (0..categories.len()).map(|c| Some(sums.get(&(c, k, j)).copied().unwrap_or(0.0))).collect();
            series.push(SeriesData { name, values });
        }
    }
    Ok(ChartData { categories, series, unit, pivoted: true })
}

/// A chart as SVG, [`WIDTH`] x [`HEIGHT`], titled with `chart.title`.
/// A `table` chart has no drawing: [`RenderError::NotDrawn`].
pub fn svg(chart: &Chart, table: &Table) -> Result<String, RenderError> {
    if !chart.kind.is_drawn() {
        return Err(RenderError::NotDrawn { chart: chart.title.clone() });
    }
    let data = data(chart, table)?;
    svg_of(chart.kind, &chart.title, &data)
}

/// A chart of `data` as SVG.
pub fn svg_of(kind: ChartKind, title: &str, data: &ChartData) -> Result<String, RenderError> {
    fonts::register_with_charts()?;
    // Percentages are drawn as such (12.5, not 0.125) with a "%" on the axis.
    let percent = data.unit == Unit::Percent;
    let series = |stack: bool| -> Vec<Series> {
        data.series
            .iter()
            .map(|s| {
                let values = s.values.iter().map(|v| v.map(|v| if percent { v * 100.0 } else { v } as f32)).collect();
                let mut series = Series::new_nullable(s.name.clone(), values);
                if stack {
                    series.stack = Some("stack".to_string());
                }
                series
            })
            .collect()
    };
    let categories = data.categories.clone();
    let many = categories.len() > MARKERS_UP_TO;
    let formatter = percent.then(|| "{c} %".to_string());
    let svg = match kind {
        ChartKind::Line | ChartKind::Area => {
            let mut chart = LineChart::new(series(false), categories);
            chart.series.fill = kind == ChartKind::Area;
            if many {
                chart.series.symbol = Some(Symbol::None);
            }
            if let Some(config) = chart.y_axis_configs.first_mut() {
                config.formatter = formatter;
            }
            setup(&mut chart.base, title);
            chart.svg()?
        }
        ChartKind::Bar | ChartKind::StackedBar => {
            let mut chart = BarChart::new(series(kind == ChartKind::StackedBar), categories);
            if let Some(config) = chart.y_axis_configs.first_mut() {
                config.formatter = formatter;
            }
            setup(&mut chart.base, title);
            chart.svg()?
        }
        ChartKind::Pie => {
            let slices: Vec<Series> = data.pie_slices().into_iter().map(|(name, value)| Series::new(name, vec![value as f32])).collect();
            let empty = slices.is_empty();
            let mut chart = PieChart::new(slices);
            // A plain pie: the default is a rose (radius by value) with a hole.
            chart.rose_type = Some(false);
            chart.inner_radius = 0.0;
            chart.radius = HEIGHT * 0.33;
            setup(&mut chart.base, title);
            let svg = chart.svg()?;
            if empty {
                // A pie of nothing is a title alone in charts-rs (its
                // `empty_text` is for charts with axes): say so as they do.
                let note = format!(
                    r##"<text font-size="14" x="{}" y="{}" text-anchor="middle" font-family="{}" fill="#6E7079">No data</text></svg>"##,
                    WIDTH / 2.0,
                    HEIGHT / 2.0,
                    fonts::SANS_FAMILY
                );
                svg.replacen("</svg>", &note, 1)
            } else {
                svg
            }
        }
        ChartKind::Table => return Err(RenderError::NotDrawn { chart: title.to_string() }),
    };
    Ok(svg)
}

/// What every chart has in common: size, font, title, no hover-only parts.
fn setup(base: &mut charts_rs::ChartBase, title: &str) {
    base.width = WIDTH;
    base.height = HEIGHT;
    base.font_family = fonts::SANS_FAMILY.to_string();
    base.title.text = title.to_string();
    base.tooltip.show = false;
    base.animation = None;
    // A year of months ("2024-01") fits side by side at 12 px on an
    // 800 px chart; more x values are thinned out rather than overlap.
    base.x_axis.font.size = 12.0;
    base.x_axis.label_overflow = AxisLabelOverflow::Thin;
    base.empty_text = Some("No data".to_string());
}

/// Options to read an SVG with: the compiled-in fonts only, DejaVu Sans
/// where no font is named, and no files read for `<image>` elements (an
/// SVG is drawn from itself alone; inline `data:` images still work).
pub(crate) fn svg_options() -> Result<usvg::Options<'static>, RenderError> {
    Ok(usvg::Options {
        font_family: fonts::SANS_FAMILY.to_string(),
        fontdb: fonts::database()?,
        image_href_resolver: usvg::ImageHrefResolver { resolve_data: usvg::ImageHrefResolver::default_data_resolver(), resolve_string: Box::new(|_, _| None) },
        ..usvg::Options::default()
    })
}

/// An SVG read for drawing.
pub(crate) fn tree(svg: &str) -> Result<usvg::Tree, RenderError> {
    usvg::Tree::from_str(svg, &svg_options()?).map_err(|e| RenderError::Svg(e.to_string()))
}

/// An SVG drawn on white as a PNG, `scale` times its size (2 for a sharp
/// image on a high-density screen).
pub fn png(svg: &str, scale: f32) -> Result<Vec<u8>, RenderError> {
    let tree = tree(svg)?;
    let size = tree.size();
    let bad_scale = || RenderError::BadScale { scale, width: size.width(), height: size.height() };
    let (width, height) = (size.width() * scale, size.height() * scale);
    if !(scale.is_finite() && scale > 0.0 && width >= 1.0 && height >= 1.0 && width * height <= MAX_PIXELS) {
        return Err(bad_scale());
    }
    let (width, height) = (width.ceil() as u32, height.ceil() as u32);
    let mut pixmap = tiny_skia::Pixmap::new(width, height).ok_or_else(bad_scale)?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());

    // The pixmap is premultiplied; PNG is not.
    let mut rgba = Vec::with_capacity(pixmap.data().len());
    for pixel in pixmap.pixels() {
        let c = pixel.demultiply();
        rgba.extend_from_slice(&[c.red(), c.green(), c.blue(), c.alpha()]);
    }
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, width, height);
    encoder.set_color(::png::ColorType::Rgba);
    encoder.set_depth(::png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| RenderError::Png(e.to_string()))?;
    writer.write_image_data(&rgba).map_err(|e| RenderError::Png(e.to_string()))?;
    writer.finish().map_err(|e| RenderError::Png(e.to_string()))?;
    Ok(out)
}
