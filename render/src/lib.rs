//! A report as a document, and its renderers: charts to SVG (and PNG),
//! the PDF (title page, KPI tiles, vector charts, tables that page-break
//! with repeated headers) and the XLSX (one sheet per section, native Excel
//! charts next to the data, number formats for money and percentages).
//! The text formats (CSV, JSON, NDJSON, SQL) use the export encoders.
//!
//! Renderers take a finished [`Document`]; building one (running specs and
//! templates) is the `reports` crate's job. A crate of its own so the jobs
//! worker (which generates) and the reports API share it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod chart;
mod error;
pub mod fonts;
pub mod format;
pub mod pdf;
pub mod xlsx;

pub use error::RenderError;

/// Paper size of the PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PageSize {
    #[default]
    A4,
    Letter,
}

/// How a number is shown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Unit {
    /// Plain text (or a value shown as it is).
    #[default]
    Text,
    /// A whole count (1,234).
    Count,
    /// Any number (1,234.5).
    Number,
    /// An amount in cents of `currency` (12345 → 123.45 EUR).
    Money { currency: String },
    /// A ratio shown as a percentage (0.125 → 12.5 %).
    Percent,
}

/// A headline figure: a tile on the PDF's first content page, a row of the
/// XLSX's summary sheet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kpi {
    pub label: String,
    pub value: Option<f64>,
    pub unit: Unit,
    /// Relative change vs the previous period (0.1 = +10 %), when known.
    pub change: Option<f64>,
}

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableColumn {
    pub name: String,
    pub unit: Unit,
}

/// Rows of values (strings, numbers or null), one per row, in column order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<TableColumn>,
    pub rows: Vec<Vec<Value>>,
}

/// A chart over its section's table: `x` and `y` (and `series`) name columns
/// of it. With a series, each distinct value of that column is one line /
/// bar group / stack part (a long table pivoted by x × series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    pub kind: ChartKind,
    pub title: String,
    pub x: String,
    pub y: Vec<String>,
    pub series: Option<String>,
}

/// One part of a report: a heading, an optional chart and the table it is
/// drawn from (a `table` chart, or no chart, shows the table alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub title: String,
    pub description: Option<String>,
    pub chart: Option<Chart>,
    pub table: Table,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub title: String,
    pub description: Option<String>,
    /// The parameters the report ran with, shown on the title page.
    pub parameters: Vec<(String, String)>,
    /// The data's time range (inclusive days, `yyyy-mm-dd`), when it has one.
    pub data_range: Option<(String, String)>,
    pub generated_at: DateTime<Utc>,
    /// Who asked for it (an email, or a name when masked).
    pub requested_by: String,
    pub page_size: PageSize,
    pub kpis: Vec<Kpi>,
    pub sections: Vec<Section>,
}

/// How a section's data is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    Line,
    Bar,
    StackedBar,
    Area,
    Pie,
    /// No drawing: the table alone.
    Table,
}

impl ChartKind {
    /// Whether the kind is drawn (every kind but [`ChartKind::Table`]).
    pub fn is_drawn(self) -> bool {
        self != ChartKind::Table
    }
}

impl Section {
    /// The section's chart when it is one that is drawn (not a `table` one).
    pub fn drawn_chart(&self) -> Option<&Chart> {
        self.chart.as_ref().filter(|chart| chart.kind.is_drawn())
    }
}

impl Table {
    /// Index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column.name == name)
    }
}
