//! Reports (issue 13): a report builder over Keel's datasets. Work in
//! progress on the `reports-wip` branch: the spec model and its validation
//! (`spec`), and the streaming group-by with bounded memory (`aggregate`).
//! The HTTP routes, templates, renderers, schedules and share links build
//! on these.

pub mod aggregate;
pub mod spec;
