//! `saved_search_alert` jobs: email a saved search's owner its new matches.
//! The search function's alert check ran the search with the owner's
//! permissions and put what they may see in the job; this only writes the
//! email, to the owner's current address, and skips owners who are gone.

use serde_json::{Value, json};
use shared::domain::jobs::{Job, SavedSearchAlert};
use shared::identity::users::{self, UserStatus};
use shared::platform::error::Result;

use crate::Worker;

pub async fn send(worker: &Worker, job: &Job) -> Result<Value> {
    let alert: SavedSearchAlert = job.payload()?;
    let Some(owner) = users::get(&worker.store, &job.owner_id).await? else {
        return Ok(json!({ "skipped": "owner no longer exists" }));
    };
    if matches!(owner.status, UserStatus::Deleted | UserStatus::Suspended) {
        return Ok(json!({ "skipped": format!("owner is {:?}", owner.status).to_lowercase() }));
    }
    let (subject, text) = email_of(&alert, &owner.name, &worker.config.public_url);
    let message_id = worker.send_email(&owner.email, &subject, text).await?;
    Ok(json!({ "message_id": message_id, "saved_search_id": alert.saved_search_id, "total": alert.total }))
}

/// The subject and text of an alert's email.
pub fn email_of(alert: &SavedSearchAlert, owner_name: &str, public_url: &str) -> (String, String) {
    let noun = if alert.total == 1 { "result" } else { "results" };
    let subject = format!("{} new {noun} for \"{}\"", alert.total, alert.name);
    let mut text = format!("Hello {owner_name},\n\nYour saved search \"{}\" has {} new {noun} since {}:\n\n", alert.name, alert.total, alert.since);
    for hit in &alert.hits {
        text += &format!("- {} ({} {})\n", hit.label, singular(&hit.doc_type), hit.id);
    }
    let more = alert.total.saturating_sub(alert.hits.len() as u64);
    if more > 0 {
        text += &format!("- and {more} more\n");
    }
    text += &format!(
        "\nRun it again: POST {public_url}/api/v1/search/advanced with the saved request.\nStop these emails: DELETE {public_url}/api/v1/search/saved/{} (or save it again without notify).\n",
        alert.saved_search_id
    );
    (subject, text)
}

fn singular(doc_type: &str) -> &str {
    match doc_type {
        "users" => "user",
        "charts" => "chart",
        "orders" => "order",
        "audit" => "audit entry",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::jobs::AlertHit;

    #[test]
    fn the_email_lists_the_hits_and_counts_the_rest() {
        let alert = SavedSearchAlert {
            saved_search_id: "s1".into(),
            name: "Big refunds".into(),
            since: "2026-12-01T10:00:00Z".into(),
            until: "2026-12-01T10:15:00Z".into(),
            total: 3,
            hits: vec![AlertHit { doc_type: "charts".into(), id: "c1".into(), label: "Tide tables".into() }],
        };
        let (subject, text) = email_of(&alert, "Ada", "https://keel.example");
        assert_eq!(subject, "3 new results for \"Big refunds\"");
        assert!(text.contains("- Tide tables (chart c1)\n- and 2 more\n"), "{text}");
        assert!(text.contains("DELETE https://keel.example/api/v1/search/saved/s1"), "{text}");
    }
}
