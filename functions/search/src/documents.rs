//! What the index holds for a table item: the item's type decides the
//! document (users, charts, orders, audit entries; everything else is not
//! searched), and what leaves the index (a soft-deleted chart, an item
//! removed). Only what is in the clear is indexed: an audit entry's sealed
//! fields (source IP, user agent, changed values) are ciphertext and are
//! left out, and its people are the pseudonyms it already names.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tantivy::TantivyDocument;

use crate::schema::{DocType, Fields};

/// A document to index.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDoc {
    pub doc_type: DocType,
    pub id: String,
    /// Ids it names (owner, user, target, actor).
    pub related: Vec<String>,
    pub title: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub body: Vec<String>,
    pub owner: Option<String>,
    pub keywords: Vec<(&'static str, String)>,
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub amount: Option<i64>,
    /// Shown in a hit.
    pub stored: Map<String, Value>,
    /// Shown in a hit to callers with `pii:read` (masked to others).
    pub personal: Map<String, Value>,
}

/// What one table change means for the index.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert(Box<SearchDoc>),
    /// Remove the document with this key (`<type>:<id>`).
    Delete(String),
    /// Not a searched item.
    Ignore,
}

pub fn key(doc_type: DocType, id: &str) -> String {
    format!("{}:{id}", doc_type.as_str())
}

fn text<'a>(item: &'a Value, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn time(item: &Value, name: &str) -> Option<DateTime<Utc>> {
    text(item, name).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

/// The document type of an item, from its `type` attribute.
pub fn type_of(item: &Value) -> Option<DocType> {
    match text(item, "type")? {
        "user" => Some(DocType::Users),
        "chart" => Some(DocType::Charts),
        "order" => Some(DocType::Orders),
        "audit" => Some(DocType::Audit),
        _ => None,
    }
}

/// The index change for a table change from `old` to `new` (stream images
/// or table items as JSON).
pub fn change_of(old: Option<&Value>, new: Option<&Value>) -> Change {
    match new {
        Some(item) => match document_of(item) {
            Some(doc) => Change::Upsert(Box::new(doc)),
            // A chart soft-deleted leaves every listing, and search.
            None => match type_of(item).zip(text(item, "id")) {
                Some((t, id)) => Change::Delete(key(t, id)),
                None => Change::Ignore,
            },
        },
        None => match old.and_then(|o| type_of(o).zip(text(o, "id"))) {
            Some((t, id)) => Change::Delete(key(t, id)),
            None => Change::Ignore,
        },
    }
}

/// The document of a searched item; `None` for anything else or for an
/// item that leaves search (a soft-deleted chart).
pub fn document_of(item: &Value) -> Option<SearchDoc> {
    let doc_type = type_of(item)?;
    let id = text(item, "id")?.to_string();
    let mut doc = SearchDoc {
        doc_type,
        id: id.clone(),
        related: Vec::new(),
        title: String::new(),
        name: None,
        email: None,
        body: Vec::new(),
        owner: None,
        keywords: Vec::new(),
        created: None,
        updated: None,
        amount: None,
        stored: Map::new(),
        personal: Map::new(),
    };
    let keep = |doc: &mut SearchDoc, names: &[&str]| {
        for name in names {
            if let Some(v) = item.get(*name).filter(|v| !v.is_null()) {
                doc.stored.insert((*name).to_string(), v.clone());
            }
        }
    };
    let keyword = |doc: &mut SearchDoc, name: &'static str, value: Option<&str>| {
        if let Some(v) = value {
            doc.keywords.push((name, v.to_string()));
        }
    };
    match doc_type {
        DocType::Users => {
            doc.name = text(item, "name").map(str::to_string);
            doc.email = text(item, "email").map(str::to_string);
            for (name, value) in [("name", &doc.name), ("email", &doc.email)] {
                if let Some(v) = value {
                    doc.personal.insert(name.into(), json!(v));
                }
            }
            keep(&mut doc, &["id", "status", "roles", "country", "created_at", "updated_at", "last_login_at"]);
            keyword(&mut doc, "status", text(item, "status"));
            keyword(&mut doc, "country", text(item, "country"));
            for role in item.get("roles").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                doc.keywords.push(("roles", role.to_string()));
                doc.body.push(role.to_string());
            }
            doc.body.extend(["status", "country"].iter().filter_map(|n| text(item, n)).map(str::to_string));
            doc.created = time(item, "created_at");
            doc.updated = time(item, "updated_at");
        }
        DocType::Charts => {
            if text(item, "deleted_at").is_some() {
                return None;
            }
            doc.title = text(item, "title").unwrap_or_default().to_string();
            doc.owner = text(item, "owner_id").map(str::to_string);
            doc.related.extend(doc.owner.clone());
            keep(&mut doc, &["id", "owner_id", "title", "kind", "moderation_status", "created_at", "updated_at"]);
            keyword(&mut doc, "kind", text(item, "kind"));
            keyword(&mut doc, "moderation_status", text(item, "moderation_status"));
            doc.body.extend(["kind", "moderation_status"].iter().filter_map(|n| text(item, n)).map(str::to_string));
            doc.created = time(item, "created_at");
            doc.updated = time(item, "updated_at");
        }
        DocType::Orders => {
            doc.title = [text(item, "plan"), text(item, "billing")].into_iter().flatten().collect::<Vec<_>>().join(" ");
            doc.related.extend(text(item, "user_id").map(str::to_string));
            // Orders may carry the buyer's contact (payments ingestion);
            // anonymized orders have none.
            doc.email = text(item, "email").map(str::to_string);
            doc.name = text(item, "customer_name").map(str::to_string);
            for (name, value) in [("customer_name", &doc.name), ("email", &doc.email)] {
                if let Some(v) = value {
                    doc.personal.insert(name.into(), json!(v));
                }
            }
            keep(&mut doc, &["id", "user_id", "plan", "billing", "amount_cents", "currency", "country", "status", "created_at", "refunded_at"]);
            for name in ["status", "country", "plan", "billing", "currency"] {
                let value = text(item, name);
                keyword(&mut doc, name, value);
                doc.body.extend(value.map(str::to_string));
            }
            doc.amount = item.get("amount_cents").and_then(Value::as_i64);
            doc.created = time(item, "created_at");
            doc.updated = time(item, "refunded_at").or(doc.created);
        }
        DocType::Audit => {
            doc.title = text(item, "action").unwrap_or_default().to_string();
            let actor = item.get("actor").cloned().unwrap_or(Value::Null);
            let actor_id = actor.get("id").and_then(Value::as_str).map(str::to_string);
            let actor_kind = actor.get("kind").and_then(Value::as_str).map(str::to_string);
            doc.related.extend(actor_id.clone());
            doc.related.extend(text(item, "target_id").map(str::to_string));
            keep(&mut doc, &["id", "ts", "action", "target_type", "target_id", "outcome", "reason", "changed_fields"]);
            doc.stored.insert("actor_id".into(), json!(actor_id));
            doc.stored.insert("actor_kind".into(), json!(actor_kind));
            keyword(&mut doc, "action", text(item, "action"));
            keyword(&mut doc, "outcome", text(item, "outcome"));
            keyword(&mut doc, "target_type", text(item, "target_type"));
            keyword(&mut doc, "actor_kind", actor_kind.as_deref());
            doc.body.extend(["target_type", "outcome", "reason"].iter().filter_map(|n| text(item, n)).map(str::to_string));
            doc.body.extend(item.get("changed_fields").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string));
            doc.created = time(item, "ts");
            doc.updated = doc.created;
        }
    }
    doc.stored.insert("type".into(), json!(doc_type.as_str()));
    Some(doc)
}

impl SearchDoc {
    pub fn key(&self) -> String {
        key(self.doc_type, &self.id)
    }

    pub fn to_tantivy(&self, f: &Fields) -> TantivyDocument {
        let mut d = TantivyDocument::default();
        d.add_text(f.key, self.key());
        d.add_text(f.doc_type, self.doc_type.as_str());
        d.add_text(f.id, &self.id);
        d.add_text(f.ids, &self.id);
        for id in &self.related {
            d.add_text(f.ids, id);
        }
        if !self.title.is_empty() {
            d.add_text(f.title, &self.title);
            d.add_text(f.title_exact, self.title.to_lowercase());
        }
        if let Some(name) = &self.name {
            d.add_text(f.name, name);
            d.add_text(f.name_exact, name.to_lowercase());
        }
        if let Some(email) = &self.email {
            d.add_text(f.email, email);
            d.add_text(f.email_exact, email.to_lowercase());
        }
        for b in &self.body {
            d.add_text(f.body, b);
        }
        if let Some(owner) = &self.owner {
            d.add_text(f.owner, owner);
        }
        for (name, value) in &self.keywords {
            if let Some(field) = f.keyword(name) {
                d.add_text(field, value);
            }
        }
        if let Some(t) = self.created {
            d.add_date(f.created, tantivy::DateTime::from_timestamp_secs(t.timestamp()));
        }
        if let Some(t) = self.updated {
            d.add_date(f.updated, tantivy::DateTime::from_timestamp_secs(t.timestamp()));
        }
        if let Some(a) = self.amount {
            d.add_i64(f.amount, a);
        }
        d.add_text(f.stored, Value::Object(self.stored.clone()).to_string());
        if !self.personal.is_empty() {
            d.add_text(f.personal, Value::Object(self.personal.clone()).to_string());
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_documents_and_deletions() {
        let user = json!({"type": "user", "id": "u1", "email": "ada@example.com", "name": "Ada Lovelace", "roles": ["admin"], "status": "active",
            "country": "GB", "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z", "password_hash": "secret"});
        let doc = document_of(&user).unwrap();
        assert_eq!(doc.key(), "users:u1");
        assert_eq!(doc.email.as_deref(), Some("ada@example.com"));
        assert!(!doc.stored.contains_key("email"), "personal fields are apart");
        assert!(!doc.stored.contains_key("password_hash"));
        assert!(doc.keywords.contains(&("roles", "admin".into())));

        let chart = json!({"type": "chart", "id": "c1", "owner_id": "u1", "title": "Revenue 2026", "deleted_at": "2026-02-01T00:00:00Z"});
        assert_eq!(change_of(None, Some(&chart)), Change::Delete("charts:c1".into()));
        assert_eq!(change_of(Some(&user), None), Change::Delete("users:u1".into()));
        assert_eq!(change_of(None, Some(&json!({"type": "job", "id": "j"}))), Change::Ignore);

        let audit = json!({"type": "audit", "id": "a1", "ts": "2026-01-02T03:04:05Z", "action": "user.created", "target_type": "user",
            "target_id": "psn_x", "outcome": "success", "actor": {"id": "psn_y", "kind": "user"}, "sealed": {"psn_y": "ciphertext"}});
        let doc = document_of(&audit).unwrap();
        assert_eq!(doc.title, "user.created");
        assert!(!doc.stored.contains_key("sealed"));
        assert!(doc.related.contains(&"psn_x".to_string()));
    }
}
