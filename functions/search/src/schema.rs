//! The search index's schema, in one place: every field, what it holds for
//! each document type, how it is analysed, and which API filter, facet or
//! sort name reaches it (docs/search.md, "Fields").
//!
//! Text is split on anything not a letter or digit, lower-cased and folded
//! to ASCII (`Zoë` finds `zoe`); no stemming, so a typo rule's distance is
//! measured against the words as written. Personal fields (`name`, `email`
//! and their exact forms) are separate fields, so a caller without
//! `pii:read` neither matches on them nor sees them.

use tantivy::Index;
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, INDEXED, IndexRecordOption, NumericOptions, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};

/// The analyser of every text field (registered on each index opened).
pub const TOKENIZER: &str = "keel";

/// The document types, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocType {
    Users,
    Charts,
    Orders,
    Audit,
}

impl DocType {
    pub const ALL: [DocType; 4] = [DocType::Users, DocType::Charts, DocType::Orders, DocType::Audit];

    pub fn as_str(self) -> &'static str {
        match self {
            DocType::Users => "users",
            DocType::Charts => "charts",
            DocType::Orders => "orders",
            DocType::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<DocType> {
        DocType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Every field of the index.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// `<type>:<id>`, the unit of replacement and deletion.
    pub key: Field,
    pub doc_type: Field,
    /// The record's id, whole (exact lookups).
    pub id: Field,
    /// The record's id and the ids it names (owner, user, target), as words:
    /// pasting an id finds the record and what points at it.
    pub ids: Field,
    /// A chart's title, an audit entry's action, an order's plan: what a
    /// result is called.
    pub title: Field,
    /// A person's name (personal).
    pub name: Field,
    /// A person's email address (personal).
    pub email: Field,
    /// Everything else worth matching, weighted lowest.
    pub body: Field,
    /// The whole title, name and email lower-cased: exact-match boosts.
    pub title_exact: Field,
    pub name_exact: Field,
    pub email_exact: Field,
    /// Who may see a chart without `charts:read`: its owner...
    pub owner: Field,
    /// ...and everyone, once approved (`moderation_status`).
    pub keywords: [(&'static str, Field); KEYWORDS.len()],
    pub created: Field,
    pub updated: Field,
    pub amount: Field,
    /// The fields shown in a hit, as JSON (personal ones apart).
    pub stored: Field,
    /// The personal fields shown to callers with `pii:read`, as JSON.
    pub personal: Field,
}

/// The keyword fields: filterable, facetable, sortable; the API names them
/// as the admin API and the exports do.
pub const KEYWORDS: [&str; 12] =
    ["status", "roles", "country", "plan", "billing", "currency", "moderation_status", "kind", "action", "outcome", "target_type", "actor_kind"];

/// The range fields (`{gte, lte}` filters and sorts) and the index fields
/// they are.
pub const DATE_FIELDS: [&str; 2] = ["created_at", "updated_at"];
pub const AMOUNT_FIELD: &str = "amount_cents";

impl Fields {
    pub fn keyword(&self, name: &str) -> Option<Field> {
        self.keywords.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// A filter or facet name as the API accepts it (`moderation` and
    /// `role` are accepted for `moderation_status` and `roles`).
    pub fn canonical(name: &str) -> &str {
        match name {
            "moderation" => "moderation_status",
            "role" => "roles",
            "amount" => AMOUNT_FIELD,
            "created" => "created_at",
            "updated" => "updated_at",
            other => other,
        }
    }
}

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::WithFreqsAndPositions));
    let ids_text =
        TextOptions::default().set_indexing_options(TextFieldIndexing::default().set_tokenizer(TOKENIZER).set_index_option(IndexRecordOption::Basic));
    let key = b.add_text_field("key", STRING);
    let doc_type = b.add_text_field("type", STRING | FAST);
    let id = b.add_text_field("id", STRING);
    let ids = b.add_text_field("ids", ids_text);
    let title = b.add_text_field("title", text.clone());
    let name = b.add_text_field("name", text.clone());
    let email = b.add_text_field("email", text.clone());
    let body = b.add_text_field("body", text);
    let title_exact = b.add_text_field("title_exact", STRING);
    let name_exact = b.add_text_field("name_exact", STRING);
    let email_exact = b.add_text_field("email_exact", STRING);
    let owner = b.add_text_field("owner", STRING);
    let keywords = KEYWORDS.map(|n| (n, b.add_text_field(n, STRING | FAST)));
    let date = DateOptions::from(INDEXED).set_fast().set_precision(DateTimePrecision::Seconds);
    let created = b.add_date_field("created_at", date.clone());
    let updated = b.add_date_field("updated_at", date);
    let amount = b.add_i64_field(AMOUNT_FIELD, NumericOptions::default().set_indexed().set_fast());
    let stored = b.add_text_field("stored", STORED);
    let personal = b.add_text_field("personal", STORED);
    let fields = Fields {
        key,
        doc_type,
        id,
        ids,
        title,
        name,
        email,
        body,
        title_exact,
        name_exact,
        email_exact,
        owner,
        keywords,
        created,
        updated,
        amount,
        stored,
        personal,
    };
    (b.build(), fields)
}

/// The analyser every text field uses (also how queries are split).
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(64)).filter(LowerCaser).filter(AsciiFoldingFilter).build()
}

/// Register the analyser on an index just created or opened.
pub fn register(index: &Index) {
    index.tokenizers().register(TOKENIZER, analyzer());
}

/// Fields from an opened index's schema (the schema it was written with).
pub fn fields_of(schema: &Schema) -> tantivy::Result<Fields> {
    let f = |name: &str| schema.get_field(name);
    Ok(Fields {
        key: f("key")?,
        doc_type: f("type")?,
        id: f("id")?,
        ids: f("ids")?,
        title: f("title")?,
        name: f("name")?,
        email: f("email")?,
        body: f("body")?,
        title_exact: f("title_exact")?,
        name_exact: f("name_exact")?,
        email_exact: f("email_exact")?,
        owner: f("owner")?,
        keywords: {
            let mut out = Vec::with_capacity(KEYWORDS.len());
            for n in KEYWORDS {
                out.push((n, f(n)?));
            }
            out.try_into().map_err(|_| tantivy::TantivyError::SchemaError("keyword fields".into()))?
        },
        created: f("created_at")?,
        updated: f("updated_at")?,
        amount: f(AMOUNT_FIELD)?,
        stored: f("stored")?,
        personal: f("personal")?,
    })
}
