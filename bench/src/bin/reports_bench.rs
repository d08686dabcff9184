//! Reports (issue 13): the report builder's figures, on a release build.
//!
//! 1. A 1,000,000-row grouped report: generated orders (shaped like the
//!    orders dataset, spread over the last 365 days, in time order as the
//!    table's monthly partitions give them) go through the engine
//!    (`reports::engine::run_over`) with a spec grouping by day and country
//!    (sum, count, count_distinct, p90; a line chart with a series per
//!    country), and the document it makes is rendered in each format by
//!    `reports::generate::render`. Rows per second count aggregation and
//!    rendering; the records are generated a page at a time while they are
//!    read, never held all at once, so their cost is in the figure as
//!    reading the table's would be. Goal: peak RSS < 128 MB (the function's
//!    memory).
//! 2. A 10-chart PDF (line, bar, stacked bar, area, pie over 12 to 30 rows,
//!    six KPIs) rendered 30 times. Goal: p95 <= 2 s.
//! 3. A PDF with 3 charts and a 10,000-row table: time and size.
//! 4. The zipped size of the `reports` and `jobs` functions (jobs renders
//!    reports too). Goal: <= 10 MB. cargo-lambda's zip when `make lambda`
//!    left one in the target directory, else the release binary beside
//!    this one zipped here as cargo-lambda does (`src/size.rs`).
//!
//! Every measurement runs in a child process of its own (this binary again,
//! told what to do by `KEEL_REPORTS_BENCH_CHILD`), so each peak RSS (VmHWM)
//! is that measurement's alone; a child that fails or is killed is reported
//! as such rather than stopping the others. The grouped report also runs
//! without rendering, so the aggregation's own peak can be told apart.
//! Goals are reported, not asserted. Progress goes to stderr, the report to
//! stdout.
//!
//! `cargo run --release -p keel-bench --bin reports-bench` (run by `make
//! bench`, after `cargo build --release -p reports -p jobs`).

// The binary and zip sizes, as the main bench measures them.
#[path = "../rss.rs"]
mod rss;
#[path = "../size.rs"]
mod size;
use rss::peak_rss_mb;

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use chrono::{DateTime, Utc};
use keel_render::{Chart, ChartKind, Document, Kpi, PageSize, Section, Table, TableColumn, Unit};
use reports::datasets::{Record, Records};
use reports::generate::ReportFormat;
use reports::spec::{MetricOp, Spec};
use reports::templates::{KpiSpec, Reduce};
use serde_json::{Map, Value, json};

const CHILD: &str = "KEEL_REPORTS_BENCH_CHILD";
const ROWS: u64 = 1_000_000;
/// Records a page, as the engine reads the table.
const PAGE: u64 = 1_000;
const DAYS: i64 = 365;
/// Distinct customers placing the orders: about ten orders each a year,
/// so nearly every order of a day and country is a different customer
/// (count_distinct holds about one id per row).
const CUSTOMERS: u64 = 100_000;
const RSS_GOAL_MB: f64 = 128.0;
const PDF_RENDERS: usize = 30;
const PDF_P95_GOAL: Duration = Duration::from_secs(2);
const TABLE_ROWS: u64 = 10_000;
const TABLE_RENDERS: usize = 5;
const ZIP_GOAL_BYTES: u64 = 10_000_000;

// Countries of the customers, weighted (20 ISO codes).
const COUNTRIES: [(&str, u64); 20] = [
    ("US", 30),
    ("GB", 8),
    ("DE", 8),
    ("FR", 6),
    ("CA", 6),
    ("IN", 5),
    ("AU", 4),
    ("NL", 4),
    ("JP", 4),
    ("BR", 4),
    ("SE", 3),
    ("ES", 3),
    ("IT", 3),
    ("MX", 2),
    ("PL", 2),
    ("CH", 2),
    ("IE", 2),
    ("SG", 2),
    ("DK", 1),
    ("NO", 1),
];
/// Plans as the demo data has them: name, monthly and annual list price
/// (cents), weight.
const PLANS: [(&str, i64, i64, u64); 3] = [("basic", 900, 9000, 60), ("pro", 2900, 29000, 30), ("team", 9900, 99000, 10)];

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// splitmix64: the same data on every run without a dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn weighted<T: Copy>(pick: u64, choices: &[(T, u64)]) -> T {
    let total: u64 = choices.iter().map(|c| c.1).sum();
    let mut at = pick % total;
    for &(choice, weight) in choices {
        if at < weight {
            return choice;
        }
        at -= weight;
    }
    choices[0].0
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Order `i` of `ROWS` spread evenly from `start` over `DAYS`, as the
/// export reader hands it to the engine (every column, null when absent).
/// A customer keeps their country, plan and billing, as in the demo data;
/// ids are UUID-shaped like the real ones (their length is what the
/// distinct counts hold).
fn order(rng: &mut Rng, i: u64, start: DateTime<Utc>) -> Record {
    let span = DAYS as u64 * 86_400;
    let at = start + chrono::Duration::seconds((i * span / ROWS + rng.below(30)) as i64);
    let customer = rng.below(CUSTOMERS);
    let trait_of = |salt: u64| mix(customer ^ salt);
    let country = weighted(trait_of(1), &COUNTRIES);
    let (plan, monthly, annual_price, _) = PLANS[weighted(trait_of(2), &[(0usize, PLANS[0].3), (1, PLANS[1].3), (2, PLANS[2].3)])];
    let annual = trait_of(3) % 100 < 30;
    let list = if annual { annual_price } else { monthly };
    let discount = if trait_of(4) % 100 < 15 { list / 5 } else { 0 };
    let refunded = rng.chance(3);
    let mut record = Map::new();
    record.insert("id".into(), Value::String(uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string()));
    record.insert("user_id".into(), Value::String(uuid::Uuid::from_u64_pair(trait_of(5), trait_of(6)).to_string()));
    record.insert("plan".into(), Value::from(plan));
    record.insert("billing".into(), Value::from(if annual { "annual" } else { "monthly" }));
    record.insert("amount_cents".into(), Value::from(list - discount));
    record.insert("currency".into(), Value::from("USD"));
    record.insert("country".into(), Value::from(country));
    record.insert("status".into(), Value::from(if refunded { "refunded" } else { "paid" }));
    record.insert("created_at".into(), Value::String(timestamp(at)));
    record.insert("refunded_at".into(), if refunded { Value::String(timestamp(at + chrono::Duration::days(1 + rng.below(13) as i64))) } else { Value::Null });
    record
}

/// The orders, a page at a time, made as they are asked for.
fn order_pages(rows: u64, start: DateTime<Utc>) -> impl Iterator<Item = Vec<Record>> + Send + 'static {
    let mut rng = Rng(2026);
    (0..rows.div_ceil(PAGE)).map(move |page| (page * PAGE..((page + 1) * PAGE).min(rows)).map(|i| order(&mut rng, i, start)).collect())
}

/// The spec; `without_distinct` leaves out its count_distinct (to
/// show what that metric's exact sets of ids cost in memory).
fn grouped_spec(now: DateTime<Utc>, without_distinct: bool) -> anyhow::Result<Spec> {
    let mut spec: Spec = serde_json::from_value(json!({
        "dataset": "orders",
        // A year and a day back, so that a day bucket is not too fine for the range.
        "filters": {"from": timestamp(now - chrono::Duration::days(DAYS + 1))},
        "group_by": [{"field": "created_at", "bucket": "day"}, "country"],
        "metrics": [
            {"op": "sum", "field": "amount_cents", "as": "gross_cents"},
            {"op": "count", "as": "orders"},
            {"op": "count_distinct", "field": "user_id", "as": "customers"},
            {"op": "p90", "field": "amount_cents", "as": "p90_cents"}
        ],
        "chart": {"type": "line", "x": "created_at", "y": ["gross_cents"], "series": "country"}
    }))?;
    if without_distinct {
        spec.metrics.retain(|m| m.op != MetricOp::CountDistinct);
    }
    Ok(spec)
}

fn format_of(name: &str) -> anyhow::Result<ReportFormat> {
    ReportFormat::ALL.into_iter().find(|f| f.as_str() == name).ok_or_else(|| anyhow!("unknown format {name}"))
}

/// Child: the grouped report, rendered as `format` (`None`: aggregation only).
async fn grouped(format: Option<ReportFormat>, without_distinct: bool) -> anyhow::Result<Value> {
    let now = Utc::now();
    let spec = grouped_spec(now, without_distinct)?;
    let plan = reports::spec::validate(&spec, now).map_err(|errors| anyhow!("the spec does not validate: {errors:?}"))?;
    let records = Records::Pages(Box::new(order_pages(ROWS, now - chrono::Duration::days(DAYS))));
    let started = Instant::now();
    let outcome = reports::engine::run_over(None, records, &spec, &plan, |_| {}).await.map_err(|e| anyhow!("{e}"))?;
    let aggregated = started.elapsed();
    let rss_aggregated = peak_rss_mb();
    let (rows_read, groups, spilled_runs, output_rows) = (outcome.rows_read, outcome.groups, outcome.spilled_runs, outcome.table.rows.len());
    let series = outcome.table.column_index("country").map(|i| {
        let mut countries: Vec<&Value> = outcome.table.rows.iter().filter_map(|r| r.get(i)).collect();
        countries.sort_by_key(|v| v.as_str());
        countries.dedup();
        countries.len()
    });
    // Ids the count_distinct held at once: one per customer and group.
    let distinct_ids: f64 = outcome.table.column_index("customers").map_or(0.0, |i| outcome.table.rows.iter().filter_map(|r| r.get(i)?.as_f64()).sum());
    let mut bytes = 0;
    if let Some(format) = format {
        let chart = spec.chart.as_ref().map(|c| Chart {
            kind: c.kind,
            title: "Gross by day and country".into(),
            x: c.x.clone(),
            y: c.y.clone(),
            series: c.series.clone(),
        });
        let sections = vec![Section { title: "Gross by day and country".into(), description: None, chart, table: outcome.table }];
        // The KPIs as a template reduces them, from the section's table.
        let kpis = [("Gross", Reduce::Sum("gross_cents")), ("Orders", Reduce::Sum("orders")), ("Day × country groups", Reduce::Rows)]
            .into_iter()
            .map(|(label, reduce)| reports::generate::kpi(&KpiSpec { label, section: 0, reduce, unit: None }, &sections))
            .collect();
        let doc = Document {
            title: "Orders by day and country".into(),
            description: Some("1,000,000 generated orders over the last 365 days (reports bench).".into()),
            parameters: vec![("from".into(), timestamp(now - chrono::Duration::days(DAYS + 1))), ("group by".into(), "created_at by day, country".into())],
            data_range: outcome.data_range,
            generated_at: now,
            requested_by: "bench@keel.test".into(),
            page_size: PageSize::A4,
            kpis,
            sections,
        };
        bytes = reports::generate::render(&doc, format, None).map_err(|e| anyhow!("{e}"))?.body.len();
    }
    let total = started.elapsed();
    eprintln!(
        "  grouped {}: aggregated in {:.2} s, total {:.2} s, {bytes} bytes",
        format.map_or("(aggregation only)", ReportFormat::as_str),
        aggregated.as_secs_f64(),
        total.as_secs_f64()
    );
    Ok(json!({
        "total_s": total.as_secs_f64(),
        "aggregate_s": aggregated.as_secs_f64(),
        "rows_read": rows_read,
        "groups": groups,
        "spilled_runs": spilled_runs,
        "output_rows": output_rows,
        "series": series,
        "distinct_ids": distinct_ids,
        "bytes": bytes,
        "rss_aggregated_mb": rss_aggregated,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Child: the records of the grouped report generated and dropped, no
/// engine: the part of its time that stands for reading the table.
fn generate() -> Value {
    let started = Instant::now();
    let records: usize = order_pages(ROWS, Utc::now() - chrono::Duration::days(DAYS)).map(|page| page.len()).sum();
    json!({"records": records, "generate_s": started.elapsed().as_secs_f64(), "peak_rss_mb": peak_rss_mb()})
}

fn column(name: &str, unit: Unit) -> TableColumn {
    TableColumn { name: name.into(), unit }
}

fn money() -> Unit {
    Unit::Money { currency: "USD".into() }
}

fn charted(title: &str, kind: ChartKind, x: &str, y: &[&str], series: Option<&str>, table: Table) -> Section {
    let chart = Chart { kind, title: title.into(), x: x.into(), y: y.iter().map(|s| s.to_string()).collect(), series: series.map(str::to_string) };
    Section { title: title.into(), description: Some(format!("{} rows (generated).", table.rows.len())), chart: Some(chart), table }
}

/// Rows of a label column and value columns; values between `lo` and `hi`.
fn series_table(rng: &mut Rng, columns: Vec<TableColumn>, labels: &[String], lo: u64, hi: u64) -> Table {
    let values = columns.len() - 1;
    let rows =
        labels.iter().map(|l| std::iter::once(Value::String(l.clone())).chain((0..values).map(|_| Value::from(lo + rng.below(hi - lo)))).collect()).collect();
    Table { columns, rows }
}

/// Rows of x × series (three plans) with one value column.
fn pivot_table(rng: &mut Rng, x: &str, value: TableColumn, labels: &[String], lo: u64, hi: u64) -> Table {
    let rows = labels
        .iter()
        .flat_map(|l| PLANS.iter().map(|p| vec![Value::String(l.clone()), Value::from(p.0), Value::from(lo + rng.below(hi - lo))]).collect::<Vec<_>>())
        .collect();
    Table { columns: vec![column(x, Unit::Text), column("plan", Unit::Text), value], rows }
}

fn months(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{}-{:02}", 2024 + i / 12, 1 + i % 12)).collect()
}

fn weeks(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("2025-W{:02}", 1 + i)).collect()
}

fn days(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("2025-06-{:02}", 1 + i)).collect()
}

fn countries(n: usize) -> Vec<String> {
    COUNTRIES.iter().take(n).map(|c| c.0.to_string()).collect()
}

/// The ten charted sections of the 10-chart PDF (12 to 30 rows each).
fn ten_sections(rng: &mut Rng) -> Vec<Section> {
    let billing: Vec<String> = PLANS.iter().flat_map(|p| [format!("{} monthly", p.0), format!("{} annual", p.0)]).collect();
    vec![
        charted(
            "Revenue by month",
            ChartKind::Line,
            "month",
            &["revenue_cents"],
            None,
            series_table(rng, vec![column("month", Unit::Text), column("revenue_cents", money())], &months(12), 5_000_000, 9_000_000),
        ),
        charted(
            "Signups by week",
            ChartKind::Bar,
            "week",
            &["signups"],
            None,
            series_table(rng, vec![column("week", Unit::Text), column("signups", Unit::Count)], &weeks(26), 200, 900),
        ),
        charted(
            "Revenue by plan",
            ChartKind::StackedBar,
            "month",
            &["revenue_cents"],
            Some("plan"),
            pivot_table(rng, "month", column("revenue_cents", money()), &months(8), 500_000, 4_000_000),
        ),
        charted(
            "Daily active users",
            ChartKind::Area,
            "day",
            &["active_users"],
            None,
            series_table(rng, vec![column("day", Unit::Text), column("active_users", Unit::Count)], &days(30), 1_500, 2_500),
        ),
        charted(
            "Orders by country",
            ChartKind::Pie,
            "country",
            &["orders"],
            None,
            series_table(rng, vec![column("country", Unit::Text), column("orders", Unit::Count)], &countries(12), 100, 3_000),
        ),
        charted("Churn rate", ChartKind::Line, "month", &["churn_rate"], None, {
            let mut t = series_table(rng, vec![column("month", Unit::Text), column("churn_rate", Unit::Percent)], &months(12), 10, 60);
            // Ratios (1 % to 6 %), as the engine gives them.
            t.rows.iter_mut().for_each(|r| r[1] = Value::from(r[1].as_f64().unwrap_or(0.0) / 1000.0));
            t
        }),
        charted(
            "Orders by plan per week",
            ChartKind::StackedBar,
            "week",
            &["orders"],
            Some("plan"),
            pivot_table(rng, "week", column("orders", Unit::Count), &weeks(10), 50, 600),
        ),
        charted(
            "Refunds and chargebacks",
            ChartKind::Bar,
            "month",
            &["refunds", "chargebacks"],
            None,
            series_table(rng, vec![column("month", Unit::Text), column("refunds", Unit::Count), column("chargebacks", Unit::Count)], &months(12), 5, 80),
        ),
        charted(
            "MRR",
            ChartKind::Area,
            "month",
            &["mrr_cents"],
            None,
            series_table(rng, vec![column("month", Unit::Text), column("mrr_cents", money())], &months(24), 20_000_000, 40_000_000),
        ),
        charted(
            "Revenue by billing",
            ChartKind::Pie,
            "billing",
            &["revenue_cents"],
            None,
            series_table(rng, vec![column("billing", Unit::Text), column("revenue_cents", money())], &billing, 1_000_000, 9_000_000),
        ),
    ]
}

fn kpis() -> Vec<Kpi> {
    let kpi = |label: &str, value: f64, unit: Unit, change: Option<f64>| Kpi { label: label.into(), value: Some(value), unit, change };
    vec![
        kpi("Revenue", 84_213_400.0, money(), Some(0.081)),
        kpi("Orders", 31_877.0, Unit::Count, Some(-0.012)),
        kpi("Churn rate", 0.034, Unit::Percent, Some(0.004)),
        kpi("Paying customers", 12_408.0, Unit::Count, None),
        kpi("ARPU", 6_787.0, money(), Some(0.02)),
        kpi("Net revenue retention", 1.07, Unit::Percent, None),
    ]
}

fn document(title: &str, sections: Vec<Section>) -> Document {
    Document {
        title: title.into(),
        description: Some("Generated data (reports bench).".into()),
        parameters: vec![("from".into(), "2025-01-01".into()), ("to".into(), "2025-12-31".into())],
        data_range: Some(("2025-01-01".into(), "2025-12-31".into())),
        generated_at: Utc::now(),
        requested_by: "bench@keel.test".into(),
        page_size: PageSize::A4,
        kpis: kpis(),
        sections,
    }
}

/// Times `runs` PDF renders of `doc` after a first one (timed apart: it
/// loads the fonts).
fn time_pdf(doc: &Document, runs: usize) -> anyhow::Result<Value> {
    let started = Instant::now();
    let bytes = keel_render::pdf::render(doc)?.len();
    let first = started.elapsed();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let pdf = keel_render::pdf::render(doc)?;
        times.push(started.elapsed());
        anyhow::ensure!(pdf.len() == bytes, "renders of the same document differ in size");
    }
    times.sort();
    Ok(json!({
        "first_ms": ms(first),
        "p50_ms": ms(percentile(&times, 50.0)),
        "p95_ms": ms(percentile(&times, 95.0)),
        "max_ms": ms(times[times.len() - 1]),
        "runs": runs,
        "bytes": bytes,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Child: the 10-chart PDF.
fn ten_charts() -> anyhow::Result<Value> {
    let doc = document("Ten charts", ten_sections(&mut Rng(13)));
    time_pdf(&doc, PDF_RENDERS)
}

/// Child: 3 charts and a 10,000-row table of orders.
fn big_table() -> anyhow::Result<Value> {
    let mut sections: Vec<Section> =
        ten_sections(&mut Rng(13)).into_iter().filter(|s| ["Revenue by month", "Revenue by plan", "Orders by country"].contains(&s.title.as_str())).collect();
    let names = [
        ("created_at", Unit::Text),
        ("id", Unit::Text),
        ("user_id", Unit::Text),
        ("plan", Unit::Text),
        ("country", Unit::Text),
        ("status", Unit::Text),
        ("amount_cents", money()),
    ];
    let rows = order_pages(TABLE_ROWS, Utc::now() - chrono::Duration::days(DAYS))
        .flatten()
        .map(|mut record| names.iter().map(|(name, _)| record.remove(*name).unwrap_or(Value::Null)).collect())
        .collect();
    let table = Table { columns: names.into_iter().map(|(name, unit)| column(name, unit)).collect(), rows };
    sections.push(Section { title: "Orders".into(), description: Some(format!("{TABLE_ROWS} orders (generated).")), chart: None, table });
    let doc = document("Three charts and 10,000 rows", sections);
    time_pdf(&doc, TABLE_RENDERS)
}

async fn child(what: &str) -> anyhow::Result<()> {
    let figures = match what.split_once(':') {
        Some(("grouped", "none")) => grouped(None, false).await?,
        Some(("grouped", format)) => grouped(Some(format_of(format)?), false).await?,
        Some(("grouped-without-distinct", "none")) => grouped(None, true).await?,
        _ if what == "generate" => generate(),
        _ if what == "ten-charts" => ten_charts()?,
        _ if what == "big-table" => big_table()?,
        _ => anyhow::bail!("unknown measurement {what}"),
    };
    println!("{figures}");
    Ok(())
}

/// Runs measurement `what` in a child process: its figures, or why it
/// failed (its exit status and last lines of stderr).
fn measure(what: &str) -> anyhow::Result<Result<Value, String>> {
    eprintln!("{what}...");
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD, what)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a measuring process")?;
    let stderr = child.stderr.take().context("no stderr")?;
    // Passed on as it comes (progress), the last lines kept: a failure's reason.
    let tail = std::thread::spawn(move || {
        let mut last: Vec<String> = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            last.push(line);
            if last.len() > 4 {
                last.remove(0);
            }
        }
        last
    });
    let mut stdout = String::new();
    child.stdout.take().context("no stdout")?.read_to_string(&mut stdout)?;
    let status = child.wait()?;
    let last = tail.join().unwrap_or_default();
    if !status.success() {
        return Ok(Err(format!("{status}: {}", last.join(" | "))));
    }
    Ok(Ok(serde_json::from_str(stdout.trim()).with_context(|| format!("reading the figures of {what}"))?))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

fn parent() -> anyhow::Result<()> {
    let load = load_average();
    let mut out = String::new();
    writeln!(out, "Reports (issue 13), release build, each measurement in its own process; load average {load} at the start")?;

    writeln!(
        out,
        "1. Grouped report: {ROWS} generated orders (pages of {PAGE}) grouped by day x country (sum, count, count_distinct, p90), line chart with a series a country, rendered per format"
    )?;
    writeln!(
        out,
        "   {:<8} {:>8} {:>9} {:>11} {:>9} {:>7} {:>13} {:>12} {:>13}  goal < {RSS_GOAL_MB:.0} MB",
        "format", "total s", "rows/s", "aggregate s", "render s", "groups", "output bytes", "peak RSS MB", "(aggregated)"
    )?;
    let mut facts = None;
    for format in std::iter::once("none").chain(ReportFormat::ALL.iter().map(|f| f.as_str())) {
        let label = if format == "none" { "(none)" } else { format };
        match measure(&format!("grouped:{format}"))? {
            Ok(v) => {
                let (total, aggregate, rss) = (f(&v, "total_s"), f(&v, "aggregate_s"), f(&v, "peak_rss_mb"));
                let bytes = if format == "none" { "-".to_string() } else { v["bytes"].to_string() };
                writeln!(
                    out,
                    "   {label:<8} {total:>8.2} {:>9.0} {aggregate:>11.2} {:>9.2} {:>7} {bytes:>13} {rss:>12.1} {:>13.1}  {}",
                    ROWS as f64 / total,
                    total - aggregate,
                    v["output_rows"],
                    f(&v, "rss_aggregated_mb"),
                    verdict(rss < RSS_GOAL_MB)
                )?;
                facts.get_or_insert(v);
            }
            Err(reason) => writeln!(out, "   {label:<8} FAILED ({reason})")?,
        }
    }
    if let Some(v) = facts {
        writeln!(
            out,
            "   rows read {}, groups {}, {} series in the chart, spilled runs {}; rows/s = {ROWS} / total (aggregation + document + render); \
             (aggregated) = peak RSS when the aggregation was done; (none) = aggregation only",
            v["rows_read"], v["groups"], v["series"], v["spilled_runs"]
        )?;
        writeln!(out, "   count_distinct held {:.0} ids at the end of the aggregation (the sum of `customers`)", f(&v, "distinct_ids"))?;
    }
    match measure("generate")? {
        Ok(v) => writeln!(
            out,
            "   generating the {} records alone (no engine; part of every time above): {:.2} s, peak RSS {:.1} MB",
            v["records"],
            f(&v, "generate_s"),
            f(&v, "peak_rss_mb")
        )?,
        Err(reason) => writeln!(out, "   generating the records alone: FAILED ({reason})")?,
    }
    match measure("grouped-without-distinct:none")? {
        Ok(v) => writeln!(
            out,
            "   the same spec without its count_distinct, aggregation only: {:.2} s, peak RSS {:.1} MB",
            f(&v, "aggregate_s"),
            f(&v, "peak_rss_mb")
        )?,
        Err(reason) => writeln!(out, "   the same spec without its count_distinct: FAILED ({reason})")?,
    }

    writeln!(out, "2. 10-chart PDF (line, bar, stacked bar, area, pie; 12 to 30 rows each; 6 KPIs), keel_render::pdf::render")?;
    match measure("ten-charts")? {
        Ok(v) => {
            let p95 = f(&v, "p95_ms");
            writeln!(
                out,
                "   first {:.0} ms; {} renders: p50 {:.0} ms  p95 {p95:.0} ms  max {:.0} ms (goal p95 <= {} ms: {});  {} bytes;  peak RSS {:.1} MB",
                f(&v, "first_ms"),
                v["runs"],
                f(&v, "p50_ms"),
                f(&v, "max_ms"),
                PDF_P95_GOAL.as_millis(),
                verdict(p95 <= ms(PDF_P95_GOAL)),
                v["bytes"],
                f(&v, "peak_rss_mb"),
            )?;
        }
        Err(reason) => writeln!(out, "   FAILED ({reason})")?,
    }

    writeln!(out, "3. PDF with 3 charts and a {TABLE_ROWS}-row table (7 columns), keel_render::pdf::render")?;
    match measure("big-table")? {
        Ok(v) => writeln!(
            out,
            "   first {:.0} ms; {} renders: p50 {:.0} ms  max {:.0} ms;  {} bytes ({:.1} MB);  peak RSS {:.1} MB",
            f(&v, "first_ms"),
            v["runs"],
            f(&v, "p50_ms"),
            f(&v, "max_ms"),
            v["bytes"],
            f(&v, "bytes") / 1e6,
            f(&v, "peak_rss_mb"),
        )?,
        Err(reason) => writeln!(out, "   FAILED ({reason})")?,
    }

    // The function binaries are built next to this one (`make bench` builds them first).
    let bin_dir = std::env::current_exe()?.parent().context("no binary directory")?.to_path_buf();
    let lambda_dir = bin_dir.parent().context("no target directory")?.join("lambda");
    writeln!(out, "4. Function size (release profile) and deployment zip, goal zip <= {} MB", ZIP_GOAL_BYTES / 1_000_000)?;
    writeln!(out, "   {:<8} {:>11} {:>7} {:>9} {:>11} {:>7} {:>8}  zip", "binary", "bytes", "MB", "stripped", "zip bytes", "zip MB", "goal")?;
    for name in ["reports", "jobs"] {
        let binary = bin_dir.join(name);
        if !binary.exists() {
            writeln!(out, "   {name:<8} not built in {} (cargo build --release -p reports -p jobs)", bin_dir.display())?;
            continue;
        }
        let size = size::measure(&binary)?;
        let zip = size::zipped(name, &binary, &lambda_dir)?;
        let stripped = match size.stripped {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "?",
        };
        let source = if zip.from_cargo_lambda { "cargo-lambda's" } else { "the release binary zipped here, deflate" };
        writeln!(
            out,
            "   {name:<8} {:>11} {:>7.2} {stripped:>9} {:>11} {:>7.2} {:>8}  {source}, {}",
            size.bytes,
            size.bytes as f64 / 1e6,
            zip.bytes,
            zip.bytes as f64 / 1e6,
            verdict(zip.bytes <= ZIP_GOAL_BYTES),
            zip.arch.unwrap_or("not ELF"),
        )?;
    }
    writeln!(out, "   load average {} at the end", load_average())?;
    print!("{out}");
    Ok(())
}

// One thread: nothing here waits on I/O, and a child's RSS is then its work's.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match std::env::var(CHILD) {
        Ok(what) => child(&what).await,
        Err(_) => parent(),
    }
}
