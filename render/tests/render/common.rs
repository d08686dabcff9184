//! The sample report the tests render.

use chrono::{TimeZone, Utc};
use keel_render::{Chart, ChartKind, Document, Kpi, PageSize, Section, Table, TableColumn, Unit};
use serde_json::{Value, json};

pub const NON_LATIN: &str = "Umsatz — 売上 — Выручка";
pub const MONTHS: [&str; 12] =
    ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06", "2024-07", "2024-08", "2024-09", "2024-10", "2024-11", "2024-12"];
pub const COUNTRIES: [&str; 4] = ["Germany", "France", "日本", "Україна"];
pub const CHANNELS: [&str; 4] = ["Search", "Direct", "Email", "Social"];

fn eur() -> Unit {
    Unit::Money { currency: "EUR".to_string() }
}

fn column(name: &str, unit: Unit) -> TableColumn {
    TableColumn { name: name.to_string(), unit }
}

/// Revenue (cents) and orders per month: a line chart with two y columns.
pub fn monthly() -> Section {
    let rows = MONTHS.iter().enumerate().map(|(i, m)| vec![json!(m), json!(1_000_000 + i as i64 * 125_050), json!(format!("{}", 300 + i * 17))]).collect();
    Section {
        title: "Monthly revenue".to_string(),
        description: Some(format!("{NON_LATIN}: revenue and orders per month.")),
        chart: Some(Chart {
            kind: ChartKind::Line,
            title: "Revenue and orders per month".to_string(),
            x: "month".to_string(),
            y: vec![NON_LATIN.to_string(), "orders".to_string()],
            series: None,
        }),
        table: Table { columns: vec![column("month", Unit::Text), column(NON_LATIN, eur()), column("orders", Unit::Count)], rows },
    }
}

/// Revenue per month and country as a long table: a stacked bar chart
/// pivoted by country. Ukraine has no rows for the first three months.
pub fn by_country() -> Section {
    let mut rows = Vec::new();
    for (i, m) in MONTHS.iter().enumerate() {
        for (c, country) in COUNTRIES.iter().enumerate() {
            if c == 3 && i < 3 {
                continue;
            }
            rows.push(vec![json!(m), json!(country), json!(200_000 + (i * 7 + c * 13) as i64 * 1_000)]);
        }
    }
    Section {
        title: "Revenue by country".to_string(),
        description: None,
        chart: Some(Chart {
            kind: ChartKind::StackedBar,
            title: "Revenue by country and month".to_string(),
            x: "month".to_string(),
            y: vec!["revenue".to_string()],
            series: Some("country".to_string()),
        }),
        table: Table { columns: vec![column("month", Unit::Text), column("country", Unit::Text), column("revenue", eur())], rows },
    }
}

/// Sessions per channel: a pie.
pub fn channels() -> Section {
    let rows = CHANNELS.iter().enumerate().map(|(i, c)| vec![json!(c), json!(5_000 - i as i64 * 900)]).collect();
    Section {
        title: "Channels".to_string(),
        description: Some("Where sessions came from.".to_string()),
        chart: Some(Chart {
            kind: ChartKind::Pie,
            title: "Sessions by channel".to_string(),
            x: "channel".to_string(),
            y: vec!["sessions".to_string()],
            series: None,
        }),
        table: Table { columns: vec![column("channel", Unit::Text), column("sessions", Unit::Count)], rows },
    }
}

/// Conversion per month: an area chart of a percentage.
pub fn conversion() -> Section {
    let rows = MONTHS.iter().enumerate().map(|(i, m)| vec![json!(m), json!(0.02 + i as f64 * 0.001)]).collect();
    Section {
        title: "Conversion".to_string(),
        description: None,
        chart: Some(Chart {
            kind: ChartKind::Area,
            title: "Conversion rate".to_string(),
            x: "month".to_string(),
            y: vec!["conversion".to_string()],
            series: None,
        }),
        table: Table { columns: vec![column("month", Unit::Text), column("conversion", Unit::Percent)], rows },
    }
}

/// `rows` orders: a table without a chart.
pub fn orders(rows: usize) -> Section {
    let rows = (0..rows)
        .map(|i| {
            let customer: Value = match i % 4 {
                0 => json!(format!("Customer {i} with a rather long name that will not fit in its column")),
                1 => json!(format!("顧客 {i}")),
                2 => json!(format!("Клиент {i}")),
                _ => Value::Null,
            };
            vec![
                json!(format!("ORD-{i:06}")),
                customer,
                json!(1999 + (i as i64 * 7919) % 250_000),
                json!((i % 100) as f64 / 100.0),
                json!(i % 9 + 1),
                json!(i as f64 / 7.0),
            ]
        })
        .collect();
    Section {
        title: "All orders".to_string(),
        description: Some("Every order of the period.".to_string()),
        chart: None,
        table: Table {
            columns: vec![
                column("order", Unit::Text),
                column("customer", Unit::Text),
                column("amount", eur()),
                column("discount", Unit::Percent),
                column("items", Unit::Count),
                column("weight", Unit::Number),
            ],
            rows,
        },
    }
}

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi { label: "Revenue".to_string(), value: Some(12_345_678.0), unit: eur(), change: Some(0.125) },
        Kpi { label: "Orders".to_string(), value: Some(4_321.0), unit: Unit::Count, change: Some(-0.03) },
        Kpi { label: "Conversion".to_string(), value: Some(0.0345), unit: Unit::Percent, change: None },
        Kpi { label: "Average basket".to_string(), value: Some(45.678), unit: Unit::Number, change: Some(0.0) },
        Kpi { label: "Top market".to_string(), value: None, unit: Unit::Text, change: None },
    ]
}

pub fn document(sections: Vec<Section>) -> Document {
    Document {
        title: "Sales report 2024".to_string(),
        description: Some(format!("Revenue, orders and channels. {NON_LATIN}.")),
        parameters: vec![("region".to_string(), "EU".to_string()), ("Währung".to_string(), "EUR".to_string())],
        data_range: Some(("2024-01-01".to_string(), "2024-12-31".to_string())),
        generated_at: Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).single().expect("a valid time"),
        requested_by: "ana@example.com".to_string(),
        page_size: PageSize::A4,
        kpis: kpis(),
        sections,
    }
}

/// The sample: KPIs of every unit, a line, a stacked bar pivoted by
/// country, a pie, an area, and a table of 10,000 rows.
pub fn sample() -> Document {
    document(vec![monthly(), by_country(), channels(), conversion(), orders(10_000)])
}
