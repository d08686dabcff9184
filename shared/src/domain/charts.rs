//! Charts (the app's user-created content): the record, its keys, the
//! moderation state machine and the moderation history kept with the chart.
//! Shared because the admin function moderates charts, the jobs worker
//! notifies their owners and the local stack seeds them.
//!
//! Keys: `CHART#id / META`; gsi1 `OWNER#user / created#id`; gsi2
//! `MODERATION#<status> / created#id`; gsi3 `CHARTS / created#id` (every
//! chart, newest first). History: `CHART#id / MOD#ts#id`, also on gsi1
//! `MODERATIONS#yyyy-mm / ts#id` (every decision of a month, for analytics).

use serde::{Deserialize, Serialize};

use crate::platform::error::{Error, Result};
use crate::store::ids::ChartId;
use crate::store::{Item, Store, Write, from_item, s, timestamp, to_item};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModerationStatus {
    Approved,
    Pending,
    Rejected,
    Flagged,
    Hidden,
}

impl ModerationStatus {
    pub const ALL: &'static [ModerationStatus] =
        &[ModerationStatus::Approved, ModerationStatus::Pending, ModerationStatus::Rejected, ModerationStatus::Flagged, ModerationStatus::Hidden];

    pub fn as_str(self) -> &'static str {
        match self {
            ModerationStatus::Approved => "approved",
            ModerationStatus::Pending => "pending",
            ModerationStatus::Rejected => "rejected",
            ModerationStatus::Flagged => "flagged",
            ModerationStatus::Hidden => "hidden",
        }
    }

    /// The gsi2 partition of charts in this state.
    pub fn partition(self) -> String {
        format!("MODERATION#{}", self.as_str())
    }
}

/// What a moderator can do to a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModerationAction {
    Approve,
    Reject,
    Flag,
    Unflag,
    Hide,
    Restore,
}

impl ModerationAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationAction::Approve => "approve",
            ModerationAction::Reject => "reject",
            ModerationAction::Flag => "flag",
            ModerationAction::Unflag => "unflag",
            ModerationAction::Hide => "hide",
            ModerationAction::Restore => "restore",
        }
    }

    /// The state machine: the state this action leads to from `from`, or
    /// `None` when the action does not apply there (answered with 409).
    pub fn apply(self, from: ModerationStatus) -> Option<ModerationStatus> {
        use ModerationAction as A;
        use ModerationStatus as S;
        match (self, from) {
            (A::Approve, S::Pending | S::Flagged | S::Rejected) => Some(S::Approved),
            (A::Reject, S::Pending | S::Flagged | S::Approved) => Some(S::Rejected),
            (A::Flag, S::Approved | S::Pending) => Some(S::Flagged),
            (A::Unflag, S::Flagged) => Some(S::Approved),
            (A::Hide, S::Approved | S::Pending | S::Flagged | S::Rejected) => Some(S::Hidden),
            (A::Restore, S::Hidden) => Some(S::Approved),
            _ => None,
        }
    }

    /// The states this action applies to (for error messages and docs).
    pub fn valid_from(self) -> Vec<ModerationStatus> {
        ModerationStatus::ALL.iter().copied().filter(|s| self.apply(*s).is_some()).collect()
    }

    /// Whether the owner is told by email (their chart is no longer shown).
    pub fn notifies_owner(self) -> bool {
        matches!(self, ModerationAction::Reject | ModerationAction::Hide)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Chart {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    /// The title lower-cased, for case-insensitive title search.
    pub title_lc: String,
    /// `line`, `bar`, `area`, `pie`, `scatter`, `heatmap`...
    pub kind: String,
    pub moderation_status: ModerationStatus,
    /// True while the chart is flagged for review (derived from the status).
    pub flagged: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Set while the chart is soft-deleted (bulk delete; restorable within
    /// `retention.restore_window_days`). Deleted charts leave every listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    pub version: u64,
}

/// The chart kinds the app draws.
pub const KINDS: &[&str] = &["line", "bar", "area", "pie", "scatter", "heatmap"];

/// The index partition of soft-deleted charts (gsi2 and gsi3), out of every listing.
pub const DELETED_PARTITION: &str = "CHARTS#deleted";

impl Chart {
    /// A new chart, waiting for review.
    pub fn new(owner_id: &str, title: &str, kind: &str) -> Chart {
        let now = timestamp(chrono::Utc::now());
        Chart {
            id: uuid::Uuid::now_v7().to_string(),
            owner_id: owner_id.to_string(),
            title: title.to_string(),
            title_lc: title.to_lowercase(),
            kind: kind.to_string(),
            moderation_status: ModerationStatus::Pending,
            flagged: false,
            created_at: now.clone(),
            updated_at: now,
            deleted_at: None,
            version: 1,
        }
    }

    pub fn pk(id: &str) -> String {
        ChartId::pk_of(id)
    }

    /// This chart in `status` (keeping `flagged` in step with it).
    pub fn with_status(self, status: ModerationStatus) -> Chart {
        Chart { moderation_status: status, flagged: status == ModerationStatus::Flagged, ..self }
    }

    /// A copy in `status`, at the next version.
    pub fn moderated(&self, status: ModerationStatus) -> Chart {
        Chart { version: self.version + 1, updated_at: timestamp(chrono::Utc::now()), ..self.clone() }.with_status(status)
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        let order = format!("{}#{}", self.created_at, self.id);
        item.insert("pk".into(), s(Chart::pk(&self.id)));
        item.insert("sk".into(), s("META"));
        item.insert("gsi1pk".into(), s(format!("OWNER#{}", self.owner_id)));
        item.insert("gsi1sk".into(), s(order.clone()));
        item.insert("gsi2pk".into(), s(self.moderation_status.partition()));
        item.insert("gsi2sk".into(), s(order.clone()));
        item.insert("gsi3pk".into(), s("CHARTS"));
        item.insert("gsi3sk".into(), s(order));
        item.insert("type".into(), s("chart"));
        if self.deleted_at.is_some() {
            // Out of the moderation queue, the listings and the owner's charts.
            item.insert("gsi1pk".into(), s(format!("OWNER#{}#deleted", self.owner_id)));
            item.insert("gsi2pk".into(), s(DELETED_PARTITION));
            item.insert("gsi3pk".into(), s(DELETED_PARTITION));
        }
        Ok(item)
    }

    pub fn create_write(&self, table: &str) -> Result<Write> {
        Write::put_new(table, self.to_item()?, Error::Conflict("chart already exists".into()))
    }
}

/// One moderation decision, kept with the chart (`CHART#id / MOD#ts#id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModerationEvent {
    pub id: String,
    pub chart_id: String,
    pub at: String,
    pub actor_id: String,
    pub action: ModerationAction,
    pub from: ModerationStatus,
    pub to: ModerationStatus,
    /// A configured moderation reason code.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The chart's version after this decision.
    pub version: u64,
}

impl ModerationEvent {
    pub fn sk_prefix() -> &'static str {
        "MOD#"
    }

    pub fn to_item(&self) -> Result<Item> {
        let mut item = to_item(self)?;
        item.insert("pk".into(), s(Chart::pk(&self.chart_id)));
        item.insert("sk".into(), s(format!("MOD#{}#{}", self.at, self.id)));
        item.insert("gsi1pk".into(), s(moderations_partition(self.at.get(..7).unwrap_or_default())));
        item.insert("gsi1sk".into(), s(format!("{}#{}", self.at, self.id)));
        item.insert("type".into(), s("moderation_event"));
        Ok(item)
    }
}

/// The gsi1 partition of the moderation decisions taken in `month` (`yyyy-mm`).
pub fn moderations_partition(month: &str) -> String {
    format!("MODERATIONS#{month}")
}

pub async fn get(store: &Store, id: &ChartId) -> Result<Option<Chart>> {
    store.get(&id.pk(), "META").await
}

pub fn from_chart_item(item: Item) -> Result<Chart> {
    from_item(item)
}

/// The latest `limit` moderation decisions on a chart, newest first.
pub async fn history(store: &Store, chart_id: &str, limit: i32) -> Result<Vec<ModerationEvent>> {
    let spec = crate::store::QuerySpec {
        key_condition: "pk = :pk AND begins_with(sk, :prefix)",
        values: vec![(":pk", s(Chart::pk(chart_id))), (":prefix", s(ModerationEvent::sk_prefix()))],
        forward: false,
        ..Default::default()
    };
    let (items, _) = store.query_page(&spec, None, limit).await?;
    items.into_iter().map(from_item).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ModerationAction as A;
    use ModerationStatus as S;

    #[test]
    fn state_machine() {
        assert_eq!(A::Approve.apply(S::Pending), Some(S::Approved));
        assert_eq!(A::Approve.apply(S::Approved), None);
        assert_eq!(A::Approve.apply(S::Hidden), None, "hidden charts come back only through restore");
        assert_eq!(A::Reject.apply(S::Flagged), Some(S::Rejected));
        assert_eq!(A::Reject.apply(S::Rejected), None);
        assert_eq!(A::Flag.apply(S::Approved), Some(S::Flagged));
        assert_eq!(A::Flag.apply(S::Hidden), None);
        assert_eq!(A::Unflag.apply(S::Flagged), Some(S::Approved));
        assert_eq!(A::Unflag.apply(S::Pending), None);
        assert_eq!(A::Hide.apply(S::Rejected), Some(S::Hidden));
        assert_eq!(A::Hide.apply(S::Hidden), None);
        assert_eq!(A::Restore.apply(S::Hidden), Some(S::Approved));
        assert_eq!(A::Restore.valid_from(), vec![S::Hidden]);
        // No action leaves a chart where it was.
        for action in [A::Approve, A::Reject, A::Flag, A::Unflag, A::Hide, A::Restore] {
            for from in S::ALL {
                assert_ne!(action.apply(*from), Some(*from), "{action:?} from {from:?}");
            }
        }
    }

    #[test]
    fn keys_and_derived_fields() {
        let chart = Chart::new("u1", "Revenue 2026", "line");
        assert_eq!(chart.title_lc, "revenue 2026");
        let flagged = chart.moderated(S::Flagged);
        assert!(flagged.flagged);
        assert_eq!(flagged.version, 2);
        let item = flagged.to_item().unwrap();
        assert_eq!(item["gsi2pk"].as_s().unwrap(), "MODERATION#flagged");
        assert_eq!(item["gsi1pk"].as_s().unwrap(), "OWNER#u1");
        assert_eq!(item["gsi3pk"].as_s().unwrap(), "CHARTS");
        assert_eq!(from_chart_item(item).unwrap(), flagged);
    }
}
