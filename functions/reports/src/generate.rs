//! Generating a report: the job's parameters ([`ReportJob`]), the document
//! they make (each section's spec run by the engine, KPIs reduced from the
//! tables) and its files in every format asked for, optionally compressed.
//! The jobs worker runs this for `report` jobs; the API checks a request
//! with [`check`] before it queues one, so a job never fails on input.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use keel_render::{Chart, Document, Kpi, PageSize, Section, Table, Unit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use shared::audit::Journal;
use shared::domain::export;
use shared::platform::error::{Error, FieldError, Result};
use utoipa::ToSchema;

use crate::engine;
use crate::spec::{self, ChartKind, Spec};
use crate::templates::{self, KpiSpec, Reduce};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportFormat {
    Csv,
    Json,
    Ndjson,
    Xlsx,
    Pdf,
    Sql,
    /// The report's charts, one under the other, as one image.
    Png,
}

impl ReportFormat {
    pub const ALL: [ReportFormat; 7] =
        [ReportFormat::Csv, ReportFormat::Json, ReportFormat::Ndjson, ReportFormat::Xlsx, ReportFormat::Pdf, ReportFormat::Sql, ReportFormat::Png];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Csv => "csv",
            ReportFormat::Json => "json",
            ReportFormat::Ndjson => "ndjson",
            ReportFormat::Xlsx => "xlsx",
            ReportFormat::Pdf => "pdf",
            ReportFormat::Sql => "sql",
            ReportFormat::Png => "png",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Csv => "text/csv; charset=utf-8",
            ReportFormat::Json => "application/json",
            ReportFormat::Ndjson => "application/x-ndjson",
            ReportFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ReportFormat::Pdf => "application/pdf",
            ReportFormat::Sql => "application/sql; charset=utf-8",
            ReportFormat::Png => "image/png",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportCompression {
    /// A zip holding the file and a `manifest.json` (names, sizes, SHA-256).
    Zip,
    Gzip,
}

/// What a report job carries: everything needed to generate it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportJob {
    pub template: Option<String>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub spec: Option<Spec>,
    pub formats: Vec<ReportFormat>,
    pub compress: Option<ReportCompression>,
    #[serde(default)]
    pub page_size: PageSize,
    /// Personal fields masked (the requester lacks `pii:read`).
    pub mask: bool,
    /// Who asked: their user id (the worker shows their email on the
    /// title page, masked like any other when `mask`).
    pub requested_by: String,
    /// Listed to everyone who reads reports.
    #[serde(default)]
    pub shared: bool,
    /// A scheduled run: whom to send it to, and when (`schedules`).
    #[serde(default)]
    pub delivery: Option<crate::schedules::Delivery>,
}

impl shared::domain::jobs::JobPayload for ReportJob {
    fn kind(&self) -> shared::domain::jobs::JobKind {
        shared::domain::jobs::JobKind::Report
    }
}

/// One stored file of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportFile {
    pub format: ReportFormat,
    /// Object key in the exports bucket.
    pub key: String,
    pub file_name: String,
    pub content_type: String,
    pub bytes: u64,
    /// Hex SHA-256 of the file as stored (also in the audit entry).
    pub sha256: String,
}

/// What a finished report job records (the job's `result`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportResult {
    pub title: String,
    pub files: Vec<ReportFile>,
    /// Rows of all sections' tables.
    pub rows: u64,
    /// Records read from the sources.
    pub rows_read: u64,
    /// The earliest and latest day of the data (`yyyy-mm-dd`).
    pub data_range: Option<(String, String)>,
    pub generated_at: String,
    /// A section was cut at its limit.
    pub truncated: bool,
}

/// A request's formats: `format` or `formats` (not both), else `default`.
pub fn formats_of(format: Option<ReportFormat>, formats: Option<&[ReportFormat]>, default: &[ReportFormat]) -> Result<Vec<ReportFormat>> {
    match (format, formats) {
        (Some(_), Some(_)) => Err(Error::field("formats", "give `format` or `formats`, not both")),
        (Some(f), None) => Ok(vec![f]),
        (None, Some(list)) => Ok(list.to_vec()),
        (None, None) => Ok(default.to_vec()),
    }
}

/// A spec as a request body holds it (absent or null: none); a body that
/// is not a spec names `spec`.
pub fn parse_spec(value: Option<&Value>) -> Result<Option<Spec>> {
    value
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value::<Spec>(v.clone()).map_err(|e| Error::field("spec", format!("not a report spec: {e}"))))
        .transpose()
}

/// The report's sections and KPIs, checked: a template with its
/// parameters, or one spec.
#[derive(Debug, Clone)]
pub struct Checked {
    pub title: String,
    pub description: Option<String>,
    pub parameters: Vec<(String, String)>,
    pub sections: Vec<(String, Spec, spec::Plan)>,
    pub kpis: Vec<KpiSpec>,
}

/// Check a request's template or spec and formats; errors name the field
/// (`spec.metrics[0].field`, `parameters.from`, `formats[1]`).
pub fn check(job: &ReportJob, now: DateTime<Utc>) -> std::result::Result<Checked, Vec<FieldError>> {
    let mut errors = Vec::new();
    let checked = match (&job.template, &job.spec) {
        (Some(_), Some(_)) => return Err(vec![FieldError::new("template", "give a template or a spec, not both")]),
        (None, None) => return Err(vec![FieldError::new("spec", "give a template or a spec")]),
        (Some(id), None) => {
            let built = templates::build(id, &job.parameters, now)?;
            let mut sections = Vec::new();
            for (i, s) in built.sections.into_iter().enumerate() {
                match spec::validate(&s.spec, now) {
                    Ok(plan) => sections.push((s.title, s.spec, plan)),
                    // A template's own spec is wrong: a bug, but say where.
                    Err(found) => errors.extend(found.into_iter().map(|e| FieldError::new(format!("template.sections[{i}].{}", e.field), e.message))),
                }
            }
            Checked { title: built.title, description: Some(built.description), parameters: built.parameters, sections, kpis: built.kpis }
        }
        (None, Some(s)) => {
            if !job.parameters.is_empty() {
                errors.push(FieldError::new("parameters", "parameters belong to templates; a spec has its filters"));
            }
            let plan = match spec::validate(s, now) {
                Ok(plan) => Some(plan),
                Err(found) => {
                    errors.extend(found.into_iter().map(|e| FieldError::new(format!("spec.{}", e.field), e.message)));
                    None
                }
            };
            let title = s.title.clone().unwrap_or_else(|| format!("Report on {}", s.dataset));
            let filters = s.filters.as_ref().and_then(Value::as_object).map(|o| o.iter().map(|(k, v)| (k.clone(), text(v))).collect()).unwrap_or_default();
            Checked {
                title: title.clone(),
                description: s.description.clone(),
                parameters: filters,
                sections: plan.map(|p| vec![(title, s.clone(), p)]).unwrap_or_default(),
                kpis: Vec::new(),
            }
        }
    };
    if job.formats.is_empty() {
        errors.push(FieldError::new("format", "name a format: csv, json, ndjson, xlsx, pdf, sql or png"));
    }
    if job.formats.len() > ReportFormat::ALL.len() {
        errors.push(FieldError::new("formats", "each format at most once"));
    }
    for (i, f) in job.formats.iter().enumerate() {
        if job.formats[..i].contains(f) {
            errors.push(FieldError::new(format!("formats[{i}]"), format!("{} is listed twice", f.as_str())));
        }
        if *f == ReportFormat::Png && !checked.sections.iter().any(|(_, s, _)| s.chart.as_ref().is_some_and(|c| c.kind != ChartKind::Table)) {
            errors.push(FieldError::new(
                if job.formats.len() == 1 { "format".to_string() } else { format!("formats[{i}]") },
                "png draws the report's charts: add a chart",
            ));
        }
    }
    if errors.is_empty() { Ok(checked) } else { Err(errors) }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A generated document with what the engine saw.
#[derive(Debug, Clone)]
pub struct Generated {
    pub document: Document,
    pub rows_read: u64,
    pub truncated: bool,
}

/// Run every section of `checked` and build the document.
pub async fn document(store: &Journal, job: &ReportJob, checked: &Checked, now: DateTime<Utc>, mut progress: impl FnMut(u64)) -> Result<Generated> {
    let mut sections = Vec::new();
    let mut rows_read = 0;
    let mut truncated = false;
    let mut range: Option<(String, String)> = None;
    for (title, spec, plan) in &checked.sections {
        let base = rows_read;
        let outcome = engine::run(store, spec, plan, job.mask, now, |n| progress(base + n)).await?;
        rows_read += outcome.rows_read;
        truncated |= outcome.truncated;
        if let Some((lo, hi)) = outcome.data_range {
            range = Some(match range {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
        let chart = spec.chart.as_ref().map(|c| Chart { kind: c.kind, title: title.clone(), x: c.x.clone(), y: c.y.clone(), series: c.series.clone() });
        sections.push(Section { title: title.clone(), description: None, chart, table: outcome.table });
    }
    // Metric sets carry periods, not times: their range is the parameters'.
    if range.is_none() {
        let get = |k: &str| checked.parameters.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let (Some(from), Some(to)) = (get("from"), get("to")) {
            range = Some((from, to));
        }
    }
    let kpis = checked.kpis.iter().map(|k| kpi(k, &sections)).collect();
    let document = Document {
        title: checked.title.clone(),
        description: checked.description.clone(),
        parameters: checked.parameters.clone(),
        data_range: range,
        generated_at: now,
        requested_by: job.requested_by.clone(),
        page_size: job.page_size,
        kpis,
        sections,
    };
    Ok(Generated { document, rows_read, truncated })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A KPI from its section's table.
pub fn kpi(spec: &KpiSpec, sections: &[Section]) -> Kpi {
    let table = sections.get(spec.section).map(|s| &s.table);
    let column = |name: &str| table.and_then(|t| t.columns.iter().position(|c| c.name == name));
    let unit_of = |name: &str| column(name).and_then(|i| table.map(|t| t.columns[i].unit.clone())).unwrap_or_default();
    let values = |name: &str| -> Vec<f64> {
        match (table, column(name)) {
            (Some(t), Some(i)) => t.rows.iter().filter_map(|r| r.get(i).and_then(number)).collect(),
            _ => Vec::new(),
        }
    };
    let rows = |name: &str, value: &str| -> Vec<usize> {
        match (table, column(name)) {
            (Some(t), Some(i)) => t.rows.iter().enumerate().filter(|(_, r)| r.get(i).is_some_and(|v| text(v) == value)).map(|(j, _)| j).collect(),
            _ => Vec::new(),
        }
    };
    let (value, change, unit) = match &spec.reduce {
        Reduce::Sum(c) => {
            let v = values(c);
            ((!v.is_empty()).then(|| v.iter().sum()), None, unit_of(c))
        }
        Reduce::Last(c) => {
            let v = values(c);
            let last = v.last().copied();
            let change = match v.len() {
                n if n >= 2 && v[n - 2] != 0.0 => Some((v[n - 1] - v[n - 2]) / v[n - 2].abs()),
                _ => None,
            };
            (last, change, unit_of(c))
        }
        Reduce::Median(c) => {
            let mut v = values(c);
            v.sort_by(f64::total_cmp);
            (crate::aggregate::percentile(&v, 0.5), None, unit_of(c))
        }
        Reduce::Rows => (Some(table.map_or(0, |t| t.rows.len()) as f64), None, Unit::Count),
        Reduce::RowsWhere(c, value) => (Some(rows(c, value).len() as f64), None, Unit::Count),
        Reduce::RowsWhereSum(c, value, sum) => {
            let picked = rows(c, value);
            let i = column(sum);
            let total = table.zip(i).map_or(0.0, |(t, i)| picked.iter().filter_map(|&j| t.rows[j].get(i).and_then(number)).sum());
            (Some(total), None, unit_of(sum))
        }
        Reduce::Ratio(a, b) => {
            let (x, y): (f64, f64) = (values(a).iter().sum(), values(b).iter().sum());
            ((y != 0.0).then(|| x / y), None, Unit::Percent)
        }
    };
    Kpi { label: spec.label.to_string(), value, unit: spec.unit.clone().unwrap_or(unit), change }
}

/// A file ready to store.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub format: ReportFormat,
    pub file_name: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').chars().take(60).collect::<String>();
    if out.is_empty() { "report".into() } else { out }
}

fn render_error(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("rendering the report: {e}"))
}

/// Render `doc` as `format`, compressed as asked.
pub fn render(doc: &Document, format: ReportFormat, compress: Option<ReportCompression>) -> Result<Rendered> {
    let base = format!("{}-{}", slug(&doc.title), doc.generated_at.format("%Y%m%dT%H%M%SZ"));
    let (body, ext, content_type): (Vec<u8>, &str, &str) = match format {
        ReportFormat::Csv if doc.sections.len() > 1 => {
            // One CSV a section (their columns differ), in a zip.
            let files = doc
                .sections
                .iter()
                .enumerate()
                .map(|(i, s)| Ok((format!("{:02}-{}.csv", i + 1, slug(&s.title)), csv(&s.table)?)))
                .collect::<Result<Vec<_>>>()?;
            return finish(
                Rendered { format, file_name: format!("{base}.csv.zip"), content_type: "application/zip".into(), body: zip(&files, doc)? },
                compress,
                doc,
            );
        }
        ReportFormat::Csv => (doc.sections.first().map(|s| csv(&s.table)).transpose()?.unwrap_or_default(), "csv", format.content_type()),
        ReportFormat::Json => (serde_json::to_vec_pretty(&json_of(doc)).map_err(render_error)?, "json", format.content_type()),
        ReportFormat::Ndjson => (ndjson(doc)?, "ndjson", format.content_type()),
        ReportFormat::Sql => (sql(doc), "sql", format.content_type()),
        ReportFormat::Xlsx => (keel_render::xlsx::render(doc).map_err(render_error)?, "xlsx", format.content_type()),
        ReportFormat::Pdf => (keel_render::pdf::render(doc).map_err(render_error)?, "pdf", format.content_type()),
        ReportFormat::Png => (png(doc)?, "png", format.content_type()),
    };
    finish(Rendered { format, file_name: format!("{base}.{ext}"), content_type: content_type.into(), body }, compress, doc)
}

fn finish(file: Rendered, compress: Option<ReportCompression>, doc: &Document) -> Result<Rendered> {
    match compress {
        None => Ok(file),
        Some(ReportCompression::Gzip) => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&file.body).map_err(render_error)?;
            Ok(Rendered {
                file_name: format!("{}.gz", file.file_name),
                content_type: "application/gzip".into(),
                body: gz.finish().map_err(render_error)?,
                ..file
            })
        }
        Some(ReportCompression::Zip) if file.content_type == "application/zip" => Ok(file),
        Some(ReportCompression::Zip) => {
            let body = zip(&[(file.file_name.clone(), file.body)], doc)?;
            Ok(Rendered { file_name: format!("{}.zip", file.file_name), content_type: "application/zip".into(), body, format: file.format })
        }
    }
}

/// A zip of `files` and a `manifest.json` naming each with its size and SHA-256.
fn zip(files: &[(String, Vec<u8>)], doc: &Document) -> Result<Vec<u8>> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let manifest = json!({
        "title": doc.title,
        "generated_at": doc.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data_range": doc.data_range,
        "files": files.iter().map(|(name, body)| json!({"name": name, "bytes": body.len(), "sha256": hex(&Sha256::digest(body))})).collect::<Vec<_>>(),
    });
    for (name, body) in files {
        out.start_file(name.as_str(), options).map_err(render_error)?;
        out.write_all(body).map_err(render_error)?;
    }
    out.start_file("manifest.json", options).map_err(render_error)?;
    out.write_all(&serde_json::to_vec_pretty(&manifest).map_err(render_error)?).map_err(render_error)?;
    Ok(out.finish().map_err(render_error)?.into_inner())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A table as CSV: a header row, then the rows; text that a spreadsheet
/// would run as a formula is neutralized as in exports.
fn csv(table: &Table) -> Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(table.columns.iter().map(|c| c.name.as_str())).map_err(render_error)?;
    for row in &table.rows {
        out.write_record(row.iter().map(|v| match v {
            Value::Null => String::new(),
            Value::String(s) => export::neutralize(s).into_owned(),
            other => other.to_string(),
        }))
        .map_err(render_error)?;
    }
    out.into_inner().map_err(render_error)
}

fn row_object(table: &Table, row: &[Value]) -> Map<String, Value> {
    table.columns.iter().zip(row).map(|(c, v)| (c.name.clone(), v.clone())).collect()
}

fn json_of(doc: &Document) -> Value {
    json!({
        "title": doc.title,
        "description": doc.description,
        "parameters": doc.parameters.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
        "data_range": doc.data_range.as_ref().map(|(a, b)| json!({"from": a, "to": b})),
        "generated_at": doc.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "requested_by": doc.requested_by,
        "kpis": doc.kpis,
        "sections": doc.sections.iter().map(|s| json!({
            "title": s.title,
            "chart": s.chart,
            "columns": s.table.columns,
            "rows": s.table.rows.iter().map(|r| Value::Object(row_object(&s.table, r))).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// One JSON object a row, with its section's title.
fn ndjson(doc: &Document) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for s in &doc.sections {
        for row in &s.table.rows {
            let mut object = Map::new();
            object.insert("section".into(), Value::String(s.title.clone()));
            object.extend(row_object(&s.table, row));
            serde_json::to_writer(&mut out, &object).map_err(render_error)?;
            out.push(b'\n');
        }
    }
    Ok(out)
}

/// One table a section: `CREATE TABLE` and `INSERT`s, portable SQL.
fn sql(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = writeln!(out, "-- {} (generated {})", doc.title.replace('\n', " "), doc.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    for (i, s) in doc.sections.iter().enumerate() {
        let table = export::sql_identifier(&format!("report_{}_{}", i + 1, slug(&s.title).replace('-', "_")));
        let types: Vec<&str> = s
            .table
            .columns
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let numeric = !matches!(c.unit, Unit::Text) || s.table.rows.iter().all(|r| r.get(j).is_none_or(|v| v.is_number() || v.is_null()));
                if numeric && !s.table.rows.is_empty() { "NUMERIC" } else { "TEXT" }
            })
            .collect();
        let columns: Vec<String> = s.table.columns.iter().zip(&types).map(|(c, t)| format!("{} {t}", export::sql_identifier(&c.name))).collect();
        let _ = writeln!(out, "\nCREATE TABLE {table} ({});", columns.join(", "));
        let names: Vec<String> = s.table.columns.iter().map(|c| export::sql_identifier(&c.name)).collect();
        for row in &s.table.rows {
            let _ = write!(out, "INSERT INTO {table} ({}) VALUES (", names.join(", "));
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    out.extend_from_slice(b", ");
                }
                match v {
                    Value::Null => out.extend_from_slice(b"NULL"),
                    Value::Number(n) if types[j] == "NUMERIC" => out.extend_from_slice(n.to_string().as_bytes()),
                    other => export::sql_string(&mut out, &text(other)),
                }
            }
            out.extend_from_slice(b");\n");
        }
    }
    out
}

/// The report's charts one under the other, as one PNG.
fn png(doc: &Document) -> Result<Vec<u8>> {
    let svgs: Vec<String> = doc
        .sections
        .iter()
        .filter_map(|s| s.chart.as_ref().filter(|c| c.kind != ChartKind::Table).map(|c| keel_render::chart::svg(c, &s.table)))
        .collect::<std::result::Result<_, _>>()
        .map_err(render_error)?;
    keel_render::chart::png(&stack(&svgs), 1.0).map_err(render_error)
}

/// SVG documents one under the other, as one SVG (each nested as an
/// `<svg>` element at its offset; their sizes from their root attributes).
fn stack(svgs: &[String]) -> String {
    let size = |svg: &str, name: &str| -> f64 {
        let root = svg.find("<svg").map_or("", |i| &svg[i..svg[i..].find('>').map_or(svg.len(), |j| i + j)]);
        let key = format!(" {name}=\"");
        root.find(&key)
            .and_then(|i| root[i + key.len()..].split('"').next())
            .and_then(|v| v.trim_end_matches("px").parse().ok())
            .unwrap_or(if name == "width" { 800.0 } else { 400.0 })
    };
    let width = svgs.iter().map(|s| size(s, "width")).fold(0.0, f64::max);
    let mut body = String::new();
    let mut y = 0.0;
    for svg in svgs {
        let start = svg.find("<svg").unwrap_or(0);
        // Place the nested root at its offset.
        body.push_str(&format!("<svg x=\"0\" y=\"{y}\"{}", &svg[start + 4..]));
        y += size(svg, "height");
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{y}\" viewBox=\"0 0 {width} {y}\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>{body}</svg>"
    )
}

/// Render every format of `job` (for the worker: it stores them).
pub fn render_all(doc: &Document, job: &ReportJob) -> Result<Vec<Rendered>> {
    job.formats.iter().map(|f| render(doc, *f, job.compress)).collect()
}

/// The SHA-256 of a rendered file, hex.
pub fn sha256(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}
