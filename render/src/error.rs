//! Why a document could not be rendered.

/// Why a chart, PDF or XLSX could not be rendered: the document asked for
/// something its data does not have, or a renderer failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A chart names a column its table does not have.
    #[error("chart \"{chart}\": the table has no column \"{column}\"")]
    UnknownColumn { chart: String, column: String },
    /// A chart has no y column to draw.
    #[error("chart \"{chart}\": no y column to draw")]
    NoValues { chart: String },
    /// A value a chart draws is neither a number nor empty.
    #[error("chart \"{chart}\": row {row} of column \"{column}\" is not a number: {value}")]
    NotANumber { chart: String, column: String, row: usize, value: String },
    /// A `table` chart has no drawing.
    #[error("chart \"{chart}\" is a table: it has no drawing")]
    NotDrawn { chart: String },
    /// A PNG was asked for at a scale that is not positive, or that would
    /// make an image too large to hold.
    #[error("a PNG at scale {scale} of a {width}x{height} drawing cannot be made")]
    BadScale { scale: f32, width: f32, height: f32 },
    /// The chart library failed.
    #[error("drawing a chart: {0}")]
    Chart(String),
    /// An SVG could not be read.
    #[error("reading an SVG: {0}")]
    Svg(String),
    /// Encoding a PNG failed.
    #[error("encoding a PNG: {0}")]
    Png(String),
    /// Writing the PDF failed.
    #[error("writing the PDF: {0}")]
    Pdf(String),
    /// Writing the XLSX failed.
    #[error("writing the XLSX: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    /// A compiled-in font could not be read.
    #[error("loading the fonts: {0}")]
    Fonts(String),
}

impl RenderError {
    /// Whether the document asked for what its data does not have (a
    /// chart of a missing column, text where a number is drawn): the
    /// report's definition is to be fixed, not the renderer.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RenderError::UnknownColumn { .. }
                | RenderError::NoValues { .. }
                | RenderError::NotANumber { .. }
                | RenderError::NotDrawn { .. }
                | RenderError::BadScale { .. }
        )
    }
}

impl From<charts_rs::Error> for RenderError {
    fn from(error: charts_rs::Error) -> Self {
        RenderError::Chart(error.to_string())
    }
}
