//! Ready workflows: `GET /api/v1/workflows/templates` and
//! `POST /api/v1/workflows/from-template`. A template is a definition with
//! `${setting}` placeholders (an address, an amount, a URL), each with a
//! default; creating from it substitutes the settings given and saves it
//! as any other definition (validated, loop-checked, audited).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::http::Caller;
use shared::http::extract::ValidJson;
use shared::platform::error::{Error, Result};
use utoipa::ToSchema;

use crate::WorkflowsState;
use crate::definition::Definition;
use crate::routes::workflows::{WorkflowView, create_workflow, inbound_url};

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = WorkflowTemplate)]
pub struct Template {
    pub name: String,
    pub description: String,
    /// The settings its placeholders take, with their defaults.
    pub settings: BTreeMap<String, String>,
    /// The definition with the defaults filled in.
    pub definition: Definition,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowTemplateList)]
pub struct TemplateList {
    pub items: Vec<Template>,
}

struct Raw {
    name: &'static str,
    description: &'static str,
    settings: &'static [(&'static str, &'static str)],
    definition: fn() -> Value,
}

const TEMPLATES: &[Raw] = &[
    Raw {
        name: "welcome_series",
        description: "Welcome a new user, then send tips two days later.",
        settings: &[("tips_delay", "2d")],
        definition: || {
            json!({"name": "Welcome series", "trigger": {"type": "event", "event": "user.created"},
            "steps": [
                {"id": "welcome", "type": "send_email", "to": "{{ event.data.email }}", "subject": "Welcome to Keel", "body": "Hello {{ event.data.name }},\n\nwelcome aboard.", "retry": {"attempts": 3, "initial_delay": "1m"}},
                {"id": "pause", "type": "wait", "duration": "${tips_delay}"},
                {"id": "tips", "type": "send_email", "to": "{{ event.data.email }}", "subject": "Three tips for your first charts", "body": "Hello {{ event.data.name }},\n\nhere is how to get the most out of Keel.", "retry": {"attempts": 3, "initial_delay": "1m"}}
            ]})
        },
    },
    Raw {
        name: "escalate_reported_charts",
        description: "Email the moderators when a chart is reported, and (auto_hide: true) hide it until they decide.",
        settings: &[("moderators_email", "moderators@example.com"), ("auto_hide", "false"), ("reason", "abuse")],
        definition: || {
            json!({"name": "Escalate reported charts", "trigger": {"type": "event", "event": "chart.flagged"},
            "steps": [
                {"id": "hide", "type": "action", "action": "chart.moderate", "condition": "${auto_hide}",
                 "params": {"chart_id": "{{ event.target.id }}", "action": "hide", "reason": "${reason}", "note": "hidden by a workflow until a moderator decides"}},
                {"id": "notify", "type": "send_email", "to": "${moderators_email}", "subject": "A chart was reported",
                 "body": "Chart {{ event.target.id }} ({{ event.data.title }}) was reported and waits for review.{% if steps.hide.status == 'succeeded' %} It is hidden meanwhile.{% endif %}"}
            ]})
        },
    },
    Raw {
        name: "notify_large_refund",
        description: "Tell finance when an order over an amount is refunded.",
        settings: &[("finance_email", "finance@example.com"), ("threshold_cents", "10000")],
        definition: || {
            json!({"name": "Notify large refunds", "trigger": {"type": "event", "event": "order.updated", "filter": "event.data.status == 'refunded'"},
            "steps": [
                {"id": "large", "type": "condition", "condition": "int(event.data.amount_cents) >= ${threshold_cents}", "on_true": "notify"},
                {"id": "notify", "type": "send_email", "to": "${finance_email}", "subject": "Large refund", "body": "Order {{ event.target.id }} ({{ event.data.amount_cents }} cents) was refunded."}
            ]})
        },
    },
    Raw {
        name: "weekly_report_email",
        description: "Every Monday at 08:00, generate the executive summary report (as the owner, masked without pii:read) and email the team the link.",
        settings: &[("recipient", "team@example.com"), ("timezone", "Europe/Paris"), ("report", "executive_summary"), ("formats", "pdf,xlsx")],
        definition: || {
            json!({"name": "Weekly report", "trigger": {"type": "schedule", "cron": "0 8 * * 1", "timezone": "${timezone}"},
            "steps": [
                {"id": "report", "type": "action", "action": "report.generate", "params": {"template": "${report}", "formats": "${formats}"}},
                {"id": "mail", "type": "send_email", "to": "${recipient}", "subject": "Weekly figures: {{ steps.report.output.title }}",
                 "body": "This week's report is being generated: sign in to Keel and open {{ steps.report.output.location }} to download it (run {{ run.id }})."}
            ]})
        },
    },
    Raw {
        name: "suspend_on_chargeback",
        description: "Suspend a customer whose orders were disputed (charged back) repeatedly, and tell the trust team.",
        settings: &[("trust_email", "trust@example.com"), ("disputes", "2")],
        definition: || {
            json!({"name": "Suspend on repeated chargebacks", "trigger": {"type": "event", "event": "order.updated", "filter": "event.data.status == 'disputed'"},
            "steps": [
                {"id": "repeated", "type": "condition", "condition": "has(event.data.customer) && has(event.data.customer.disputed) && event.data.customer.disputed >= ${disputes}", "on_true": "suspend"},
                {"id": "suspend", "type": "action", "action": "user.suspend", "params": {"user_id": "{{ event.data.user_id }}"}},
                {"id": "tell", "type": "send_email", "to": "${trust_email}", "subject": "Customer suspended after repeated chargebacks",
                 "body": "Order {{ event.target.id }} was disputed: {{ event.data.customer.disputed }} of the customer's {{ event.data.customer.orders }} orders are. User {{ event.data.user_id }} is suspended."}
            ]})
        },
    },
    Raw {
        name: "two_factor_reminder",
        description: "Remind a privileged user who signs in without 2FA to turn it on; tell security if they have not within the grace period.",
        settings: &[("grace", "7d"), ("security_email", "security@example.com")],
        definition: || {
            json!({"name": "2FA reminder", "trigger": {"type": "event", "event": "auth.login"},
            "steps": [
                {"id": "privileged", "type": "condition", "condition": "!event.data.two_factor && event.data.roles.exists(r, r in ['super_admin', 'admin', 'moderator'])", "on_true": "remind"},
                {"id": "remind", "type": "send_email", "to": "{{ event.data.email }}", "subject": "Turn on two-factor authentication", "body": "Hello {{ event.data.name }},\n\nyour account can change other people's data: please turn on 2FA."},
                {"id": "enrolled", "type": "wait_for_event", "event": "mfa.activated", "filter": "received.target.id == event.target.id", "timeout": "${grace}",
                 "on_success": "end", "on_timeout": "escalate"},
                {"id": "escalate", "type": "send_email", "to": "${security_email}", "subject": "A privileged account still has no 2FA",
                 "body": "User {{ event.target.id }} (roles {{ event.data.roles | join(', ') }}) was reminded on {{ event.at }} and has not turned on 2FA."}
            ]})
        },
    },
    Raw {
        name: "security_event_to_chat",
        description: "Post each detected security event to a Slack-compatible incoming webhook.",
        settings: &[("webhook_url", "https://hooks.slack.com/services/T000/B000/XXXX")],
        definition: || {
            json!({"name": "Security events to chat", "trigger": {"type": "event", "event": "security_event.detected"},
                "steps": [{"id": "post", "type": "send_webhook", "url": "${webhook_url}", "payload": {"text": "Keel security event {{ event.target.id }} at {{ event.at }}"},
                           "retry": {"attempts": 5, "initial_delay": "30s", "backoff": 2, "max_delay": "30m", "jitter": 0.2}}]})
        },
    },
    Raw {
        name: "offboarding",
        description: "Offboard a person: revoke their sessions, take a role away and suspend them (run by hand with input user_id and role).",
        settings: &[],
        definition: || {
            json!({"name": "Offboarding", "trigger": {"type": "manual"},
            "steps": [
                {"id": "sessions", "type": "action", "action": "user.revoke_sessions", "params": {"user_id": "{{ input.user_id }}"}},
                {"id": "role", "type": "action", "action": "user.remove_role", "params": {"user_id": "{{ input.user_id }}", "role": "{{ input.role }}"}, "condition": "has(input.role)"},
                {"id": "suspend", "type": "action", "action": "user.suspend", "params": {"user_id": "{{ input.user_id }}"}}
            ]})
        },
    },
];

/// A template's definition with `settings` (over its defaults) filled in.
fn fill(raw: &Raw, given: &BTreeMap<String, String>) -> Result<Definition> {
    let mut text = (raw.definition)().to_string();
    for (name, default) in raw.settings {
        let value = given.get(*name).map(String::as_str).unwrap_or(default);
        // As a JSON string's content (quotes and backslashes escaped).
        let escaped = serde_json::to_string(value).map_err(|e| Error::internal(e.to_string()))?;
        text = text.replace(&format!("${{{name}}}"), &escaped[1..escaped.len() - 1]);
    }
    serde_json::from_str(&text).map_err(|e| Error::internal(format!("template {}: {e}", raw.name)))
}

fn template_of(raw: &Raw) -> Result<Template> {
    Ok(Template {
        name: raw.name.into(),
        description: raw.description.into(),
        settings: raw.settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        definition: fill(raw, &BTreeMap::new())?,
    })
}

#[utoipa::path(get, path = "/api/v1/workflows/templates", tag = "workflows", responses((status = 200, body = TemplateList)))]
pub async fn list() -> Result<Json<TemplateList>> {
    Ok(Json(TemplateList { items: TEMPLATES.iter().map(template_of).collect::<Result<_>>()? }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkflowFromTemplate)]
pub struct FromTemplate {
    /// A template's name (`GET /api/v1/workflows/templates`).
    pub template: String,
    /// A name of its own (default: the template's).
    #[serde(default)]
    pub name: Option<String>,
    /// Values for the template's settings (the others keep their defaults).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// Create a workflow from a template.
#[utoipa::path(post, path = "/api/v1/workflows/from-template", tag = "workflows", request_body = FromTemplate,
    responses(
        (status = 201, body = WorkflowView),
        (status = 400, description = "No such template or setting, or the result is not valid", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<WorkflowsState>, caller: Caller, ValidJson(body): ValidJson<FromTemplate>) -> Result<(StatusCode, Json<WorkflowView>)> {
    let raw = TEMPLATES
        .iter()
        .find(|t| t.name == body.template)
        .ok_or_else(|| Error::field("template", format!("one of {}", TEMPLATES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "))))?;
    if let Some(unknown) = body.settings.keys().find(|k| !raw.settings.iter().any(|(name, _)| name == *k)) {
        return Err(Error::field(format!("settings.{unknown}"), format!("template {} has no setting {unknown}", raw.name)));
    }
    if let Some((name, _)) = body.settings.iter().find(|(_, v)| v.len() > 2_000 || v.chars().any(char::is_control)) {
        return Err(Error::field(format!("settings.{name}"), "at most 2,000 characters without control characters"));
    }
    let mut definition = fill(raw, &body.settings)?;
    if let Some(name) = body.name {
        definition.name = name;
    }
    let (workflow, secret) = create_workflow(&state, &caller, definition.clone(), Some(raw.name)).await?;
    let inbound_url = inbound_url(&state, &workflow);
    Ok((StatusCode::CREATED, Json(WorkflowView { workflow, definition, inbound_url, webhook_secret: secret })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_a_valid_definition() {
        assert!(TEMPLATES.len() >= 8);
        for raw in TEMPLATES {
            let template = template_of(raw).unwrap();
            assert_eq!(template.definition.validate(), vec![], "{}", raw.name);
        }
    }
}
