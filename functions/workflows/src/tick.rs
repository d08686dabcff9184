//! The workflows tick (EventBridge, every minute; `make dev` and the tests
//! call it with their own clock): fires the schedules that are due, and
//! sends the step messages that are due but were too far ahead for SQS
//! (waits and retry delays over 15 minutes) or whose message was lost.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::platform::error::Result;
use shared::store::{QuerySpec, s, timestamp};

use crate::engine::Engine;
use crate::model::{self, DUE_PK, SCHEDULE_PK, SQS_MAX_DELAY_SECONDS, StepMessage, Workflow};

/// A pending message still unsent this long after its time was lost (and
/// one resent is resent again only this long after).
const STALE_SECONDS: i64 = 300;
/// Items read per page.
const PAGE: i32 = 200;
/// At most this many schedules fired and messages sent a tick (the tick's
/// Lambda has 120 s); the rest wait for the next minute's tick.
const MAX_SCHEDULES: usize = 2_000;
const MAX_MESSAGES: usize = 5_000;
/// Messages sent at once.
const SEND_CONCURRENCY: usize = 16;

/// The next time `cron` fires strictly after `after`, in `timezone` (UTC
/// by default).
pub fn next_time(cron: &str, timezone: Option<&str>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron: croner::Cron = cron.parse().ok()?;
    let tz: chrono_tz::Tz = timezone.unwrap_or("UTC").parse().ok()?;
    cron.find_next_occurrence(&after.with_timezone(&tz), false).ok().map(|t| t.with_timezone(&Utc))
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Ticked {
    pub schedules_fired: usize,
    pub messages_sent: usize,
}

pub struct Tick<'a> {
    pub engine: &'a Engine,
    pub sqs: &'a aws_sdk_sqs::Client,
    pub queue_url: &'a str,
}

impl Tick<'_> {
    pub async fn run(&self, now: DateTime<Utc>) -> Result<Ticked> {
        let schedules_fired = self.fire_schedules(now).await?;
        let messages_sent = self.send_due(now).await?;
        Ok(Ticked { schedules_fired, messages_sent })
    }

    /// Start a run of every schedule whose time has come, and move its
    /// next time on, in one transaction per schedule (the run's id is the
    /// schedule's time: a tick that runs twice starts it once).
    async fn fire_schedules(&self, now: DateTime<Utc>) -> Result<usize> {
        let store = self.engine.store.store();
        let spec = QuerySpec {
            index: Some("gsi3"),
            key_condition: "gsi3pk = :pk AND gsi3sk <= :now",
            values: vec![(":pk", s(SCHEDULE_PK)), (":now", s(format!("{}~", timestamp(now))))],
            forward: true,
            ..Default::default()
        };
        let mut pages = store.query_pages(&spec, None);
        let mut due = Vec::new();
        while due.len() < MAX_SCHEDULES
            && let Some(page) = pages.next(Some(PAGE)).await?
        {
            due.extend(page);
        }
        let mut fired = 0;
        for item in due {
            let workflow = Workflow::from_item(item)?;
            let (Some(due), true) = (workflow.next_run_at.clone(), workflow.enabled) else { continue };
            let Some(version) = model::version(store, &workflow.id, workflow.version).await? else { continue };
            let crate::definition::Trigger::Schedule { cron, timezone } = &version.definition.trigger else { continue };
            let mut next = workflow.clone();
            next.next_run_at = next_time(cron, timezone.as_deref(), now).map(timestamp);
            next.rev += 1;
            let run_id = crate::engine::derived_id(&format!("{}/schedule/{due}", workflow.id));
            let event = serde_json::json!({"type": "schedule", "scheduled_for": due, "cron": cron});
            let (_, mut writes) =
                crate::engine::start_with_id(&run_id, &version, crate::engine::Origin::new("schedule", event, serde_json::json!({})), now, store.table())?;
            writes.push(next.save_write(store.table(), workflow.rev)?);
            match store.transact(writes).await {
                Ok(()) => fired += 1,
                Err(shared::platform::error::Error::Conflict(_)) => tracing::info!(workflow_id = %workflow.id, "schedule fired by another tick"),
                Err(e) => return Err(e),
            }
        }
        Ok(fired)
    }

    /// Send the pending step messages due within SQS's reach that only the
    /// tick sends (deferred ones), and any left unsent past their time.
    /// Each kind is read with its own filter, page after page, so messages
    /// already on their way (a backlog of them) never hide the ones only
    /// the tick would send.
    async fn send_due(&self, now: DateTime<Utc>) -> Result<usize> {
        use futures::{StreamExt, TryStreamExt};
        let store = self.engine.store.store();
        let horizon = now + chrono::Duration::seconds(SQS_MAX_DELAY_SECONDS);
        let stale_before = timestamp(now - chrono::Duration::seconds(STALE_SECONDS));
        let deferred = QuerySpec {
            index: Some("gsi2"),
            key_condition: "gsi2pk = :pk AND gsi2sk <= :until",
            filter: "#deferred = :yes AND attribute_not_exists(sent_at)",
            names: vec![("#deferred", "deferred")],
            values: vec![(":pk", s(DUE_PK)), (":until", s(format!("{}~", timestamp(horizon)))), (":yes", aws_sdk_dynamodb::types::AttributeValue::Bool(true))],
            forward: true,
            ..Default::default()
        };
        // Due before `stale_before` and not sent since then: lost.
        let lost = QuerySpec {
            index: Some("gsi2"),
            key_condition: "gsi2pk = :pk AND gsi2sk < :stale",
            filter: "attribute_not_exists(sent_at) OR sent_at < :stale",
            values: vec![(":pk", s(DUE_PK)), (":stale", s(stale_before.clone()))],
            forward: true,
            ..Default::default()
        };
        let mut messages: Vec<StepMessage> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for spec in [&lost, &deferred] {
            let mut pages = store.query_pages(spec, None);
            // Whole pages (1 MB): the filters drop most of what is read.
            while messages.len() < MAX_MESSAGES
                && let Some(page) = pages.next(None).await?
            {
                for item in page {
                    let image = serde_dynamo::from_item::<_, serde_json::Value>(item).map_err(|e| shared::platform::error::Error::internal(e.to_string()))?;
                    if let Some((message, _)) = model::pending_message(&image)
                        && seen.insert((message.run_id.clone(), message.sk()))
                    {
                        messages.push(message);
                    }
                }
            }
        }
        // The futures are collected first: a stream mapping through a
        // closure is not `Send` (a rustc limitation with higher-ranked
        // lifetimes), and the local stack spawns the tick.
        let sending: Vec<_> = messages.iter().take(MAX_MESSAGES).map(|message| self.send_one(message, now)).collect();
        let sent = futures::stream::iter(sending).buffer_unordered(SEND_CONCURRENCY).try_collect::<Vec<()>>().await?;
        Ok(sent.len())
    }

    /// Send one message and record when (the lost ones wait 5 minutes from it).
    async fn send_one(&self, message: &StepMessage, now: DateTime<Utc>) -> Result<()> {
        send(self.sqs, self.queue_url, message, now).await?;
        let update = shared::store::UpdateSpec::new("SET sent_at = :now").condition("attribute_exists(pk)").value(":now", s(timestamp(now)));
        self.engine.store.store().update(&model::run_pk(&message.run_id), &message.sk(), &update).await?;
        Ok(())
    }
}

/// Send one step message to the jobs queue, held back until its time (at
/// most SQS's 15 minutes; the tick sends later ones when they are due).
pub async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, message: &StepMessage, now: DateTime<Utc>) -> Result<()> {
    let due = model::not_before(&message.not_before)?;
    let delay = (due - now).num_seconds().clamp(0, SQS_MAX_DELAY_SECONDS) as i32;
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(message.body()?)
        .delay_seconds(delay)
        .send()
        .await
        .map_err(shared::platform::error::aws("sqs SendMessage (workflow step)"))?;
    Ok(())
}
