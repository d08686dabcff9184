//! Brute-force protection: token buckets kept in the table, one per action
//! (login, refresh, 2FA), scope (account, source IP) and subject. Every
//! attempt takes a token before any secret is checked; a success gives it
//! back (and resets the account's bucket), so in effect failures consume.
//! An empty bucket refuses with 429 and `Retry-After`. Lockouts, and their
//! end, are audited. Policy and audit rules: docs/rate-limits.md.
//!
//! Keys: `RATE#<action>.<scope>#sha256(subject) / BUCKET`, with `tokens`,
//! `updated_at`, `seq` (every write is conditioned on the `seq` it read, so
//! concurrent attempts cannot spend the same token twice) and `ttl`.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::Journal;
use crate::audit::{Actor, AuditEntry, Outcome};
use crate::identity::users::{self, Email, User};
use crate::platform::crypto::sha256_hex;
use crate::platform::error::{Error, Result};
use crate::platform::time;
use crate::store::{Condition, Store, Transacted, UpdateSpec, Write, n, s, timestamp, to_item};

pub use crate::platform::rate_limit_policy::{Action, Policy, RateLimits, Scope};

/// One bucket an attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    scope: Scope,
    /// Normalized (trimmed, lower-case); stored only as a digest.
    subject: String,
}

impl Limit {
    /// Per account: the normalized email (login, also for unknown emails so
    /// that limits reveal nothing) or the user id (refresh, 2FA).
    pub fn account(email_or_user_id: &str) -> Limit {
        Limit { scope: Scope::Account, subject: email_or_user_id.trim().to_lowercase() }
    }

    /// Per source address (`RequestMeta::source_ip`); requests without one
    /// share a single bucket.
    pub fn ip(source_ip: Option<&str>) -> Limit {
        Limit { scope: Scope::Ip, subject: source_ip.map(|ip| ip.trim().to_lowercase()).unwrap_or_else(|| "unknown".into()) }
    }

    /// The bucket's partition key for `action`.
    pub fn key(&self, action: Action) -> String {
        format!("RATE#{}.{}#{}", action.as_str(), self.scope.as_str(), sha256_hex(self.subject.as_bytes()))
    }
}

/// Token-bucket arithmetic, in whole tokens and milliseconds. `updated_at_ms`
/// is the last refill tick, not the last attempt: refilling advances it by
/// whole intervals only, so a partial interval is never lost or rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub tokens: u32,
    pub updated_at_ms: i64,
}

impl Bucket {
    pub fn full(policy: Policy, now_ms: i64) -> Bucket {
        Bucket { tokens: policy.burst, updated_at_ms: now_ms }
    }

    /// The bucket at `now_ms`: the tokens earned since its last tick, at most
    /// `burst`. A full bucket earns nothing, so its clock restarts at `now`.
    pub fn refilled(self, policy: Policy, now_ms: i64) -> Bucket {
        if self.tokens >= policy.burst {
            return Bucket::full(policy, now_ms);
        }
        // A clock behind the stored one (another machine's) earns nothing.
        let earned = (now_ms - self.updated_at_ms).max(0) / policy.interval_ms();
        let tokens = i64::from(self.tokens) + earned;
        if tokens >= i64::from(policy.burst) {
            Bucket::full(policy, now_ms)
        } else {
            Bucket { tokens: tokens as u32, updated_at_ms: self.updated_at_ms + earned * policy.interval_ms() }
        }
    }

    /// Take one token at `now_ms`, or `None` if the bucket is empty.
    pub fn take(self, policy: Policy, now_ms: i64) -> Option<Bucket> {
        let current = self.refilled(policy, now_ms);
        (current.tokens >= 1).then(|| Bucket { tokens: current.tokens - 1, ..current })
    }

    /// Whole seconds until a token is available (0 if one is now; at least
    /// 1 otherwise, so a client never retries too early).
    pub fn retry_after_secs(self, policy: Policy, now_ms: i64) -> u64 {
        let current = self.refilled(policy, now_ms);
        if current.tokens >= 1 {
            return 0;
        }
        let wait_ms = (current.updated_at_ms + policy.interval_ms() - now_ms).max(1);
        (wait_ms as u64).div_ceil(1000)
    }

    /// When the bucket is full again: from then on it equals no bucket.
    pub fn full_at_ms(self, policy: Policy) -> i64 {
        if self.tokens >= policy.burst { self.updated_at_ms } else { self.updated_at_ms + i64::from(policy.burst - self.tokens) * policy.interval_ms() }
    }
}

/// How long an account bucket that recorded a lockout outlives its refill,
/// so that the next successful attempt can still record `auth.unlock`.
const KEEP_LOCKED_SECS: i64 = 7 * 24 * 3600;
/// Optimistic rounds before an attempt is refused for contention (fail
/// closed: a bucket under that much concurrent fire is being attacked).
const MAX_ROUNDS: usize = 10;
const SK: &str = "BUCKET";

/// A bucket as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BucketItem {
    pk: String,
    sk: String,
    #[serde(rename = "type")]
    kind: String,
    /// `<action>.<scope>`, for people reading the table.
    limit: String,
    tokens: u32,
    /// The last refill tick (RFC 3339).
    updated_at: String,
    seq: u64,
    ttl: i64,
    /// The first lockout recorded since the last success or unlock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_at: Option<String>,
    /// End of the lock period whose lockout was recorded (no second entry
    /// until it passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lock_until: Option<String>,
    /// Attempts refused since `locked_at`.
    #[serde(default)]
    denied: u64,
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_else(Utc::now)
}

impl BucketItem {
    fn bucket(&self) -> Bucket {
        Bucket { tokens: self.tokens, updated_at_ms: time::parse(&self.updated_at).map(|t| t.timestamp_millis()).unwrap_or(0) }
    }

    fn ttl_for(bucket: Bucket, policy: Policy, scope: Scope, locked: bool) -> i64 {
        let keep = if locked && scope == Scope::Account { KEEP_LOCKED_SECS } else { 0 };
        bucket.full_at_ms(policy).div_euclid(1000) + 60 + keep
    }
}

/// One bucket read for an attempt.
#[derive(Debug, Clone)]
struct Charged {
    limit: Limit,
    key: String,
    policy: Policy,
}

/// An attempt that passed its limits (its tokens are taken). Call
/// [`Attempt::succeeded`] once the credential checked out; dropping it
/// otherwise counts the attempt as failed, so every early return — a wrong
/// password, an expired code, an error — costs a token without more code.
#[derive(Debug)]
#[must_use = "call succeeded() when the attempt succeeds; dropping it counts the attempt as failed"]
pub struct Attempt {
    store: Journal,
    policies: RateLimits,
    action: Action,
    actor: Actor,
    charged: Vec<Charged>,
}

/// Take a token from each of `limits` for `action`, atomically (all or
/// none), before any secret is checked. An empty bucket refuses with 429
/// (`Retry-After`: seconds until the next token) and the first refusal of a
/// lock period is audited as `auth.lockout`.
///
/// ```ignore
/// let attempt = rate_limits::guard(&platform.store, &platform.config.rate_limits, &[Limit::account(&user.id), Limit::ip(meta.source_ip.as_deref())], Action::TwoFactor, &actor).await?;
/// // ... check the code; every early return counts as a failure ...
/// attempt.succeeded().await?;
/// ```
pub async fn guard(journal: &Journal, policies: &RateLimits, limits: &[Limit], action: Action, actor: &Actor) -> Result<Attempt> {
    guard_at(journal, policies, limits, action, actor, Utc::now()).await
}

/// [`guard`] with the store, policies and clock given.
pub async fn guard_at(store: &Journal, policies: &RateLimits, limits: &[Limit], action: Action, actor: &Actor, now: DateTime<Utc>) -> Result<Attempt> {
    let mut attempt = Attempt { store: store.clone(), policies: policies.clone(), action, actor: actor.clone(), charged: Vec::new() };
    attempt.charge(limits, now).await?;
    Ok(attempt)
}

impl Attempt {
    /// Count this attempt against more limits, once their subject is known
    /// (refresh learns the account from the token). Refused like [`guard`];
    /// the tokens already taken stay taken.
    pub async fn include(&mut self, limits: &[Limit]) -> Result<()> {
        self.charge(limits, Utc::now()).await
    }

    async fn charge(&mut self, limits: &[Limit], now: DateTime<Utc>) -> Result<()> {
        let now_ms = now.timestamp_millis();
        for _ in 0..MAX_ROUNDS {
            let (store, action, policies) = (&self.store, self.action, &self.policies);
            let reads = futures::future::try_join_all(limits.iter().map(|limit| async move {
                let key = limit.key(action);
                let stored: Option<BucketItem> = store.get(&key, SK).await?;
                Ok::<_, Error>((Charged { limit: limit.clone(), key, policy: policies.policy(action, limit.scope) }, stored))
            }))
            .await?;

            let mut planned = Vec::with_capacity(reads.len());
            let mut refused = Vec::new();
            for (charged, stored) in reads {
                let before = stored.as_ref().map(BucketItem::bucket).unwrap_or_else(|| Bucket::full(charged.policy, now_ms));
                match before.take(charged.policy, now_ms) {
                    Some(after) => planned.push((charged, stored, after)),
                    None => {
                        let wait = before.retry_after_secs(charged.policy, now_ms);
                        refused.push((charged, stored, wait));
                    }
                }
            }
            if !refused.is_empty() {
                // All or none: no token is taken from the other buckets.
                let retry_after_secs = refused.iter().map(|(_, _, wait)| *wait).max().unwrap_or(1).max(1);
                for (charged, stored, wait) in &refused {
                    if let Some(item) = stored {
                        self.record_refusal(charged, item, *wait, now).await?;
                    }
                }
                return Err(Error::TooManyRequests { retry_after_secs });
            }

            let mut writes = Vec::with_capacity(planned.len());
            for (charged, stored, after) in &planned {
                let after = *after;
                let locked = stored.as_ref().is_some_and(|i| i.locked_at.is_some());
                let item = BucketItem {
                    pk: charged.key.clone(),
                    sk: SK.into(),
                    kind: "rate_bucket".into(),
                    limit: format!("{}.{}", self.action.as_str(), charged.limit.scope.as_str()),
                    tokens: after.tokens,
                    updated_at: timestamp(at_ms(after.updated_at_ms)),
                    seq: stored.as_ref().map(|i| i.seq + 1).unwrap_or(1),
                    ttl: BucketItem::ttl_for(after, charged.policy, charged.limit.scope, locked),
                    locked_at: stored.as_ref().and_then(|i| i.locked_at.clone()),
                    lock_until: stored.as_ref().and_then(|i| i.lock_until.clone()),
                    denied: stored.as_ref().map(|i| i.denied).unwrap_or(0),
                };
                let condition = match stored {
                    Some(prev) => Condition::new("seq = :seen").value(":seen", n(prev.seq)),
                    None => Condition::new("attribute_not_exists(pk)"),
                };
                writes.push(Write::put_if(self.store.table(), to_item(&item)?, &condition, None)?);
            }
            match self.store.try_transact(&writes).await? {
                Transacted::Done => {
                    self.charged.extend(planned.into_iter().map(|(c, _, _)| c));
                    return Ok(());
                }
                Transacted::ConditionFailed(_) | Transacted::Contended => {
                    // Another attempt changed a bucket since it was read:
                    // read again (with jitter, so racers spread out).
                    tokio::time::sleep(Duration::from_millis(2 + rand::random::<u64>() % 15)).await;
                }
            }
        }
        tracing::warn!(action = self.action.as_str(), "rate limit buckets too contended; attempt refused");
        Err(Error::TooManyRequests { retry_after_secs: 1 })
    }

    /// Audit the first refusal of a lock period (`auth.lockout`); count the
    /// later ones on the bucket (reported by `auth.unlock`), so a flood of
    /// attempts does not flood the audit log.
    async fn record_refusal(&self, charged: &Charged, item: &BucketItem, wait_secs: u64, now: DateTime<Utc>) -> Result<()> {
        let in_recorded_period = item.lock_until.as_deref().and_then(time::parse).is_some_and(|until| until > now);
        if in_recorded_period {
            // A bucket gone meanwhile (expired, unlocked) has nothing to count.
            let count = UpdateSpec::new("ADD denied :one, seq :one").condition("attribute_exists(pk)").value(":one", n(1));
            self.store.update(&charged.key, SK, &count).await?;
            return Ok(());
        }

        let until = now + chrono::Duration::seconds(wait_secs as i64);
        let mark = UpdateSpec::new("SET locked_at = if_not_exists(locked_at, :now), lock_until = :until, #ttl = :ttl ADD denied :one, seq :one")
            .condition("seq = :seen")
            .name("#ttl", "ttl")
            .value(":now", s(timestamp(now)))
            .value(":until", s(timestamp(until)))
            .value(":ttl", n(BucketItem::ttl_for(item.bucket(), charged.policy, charged.limit.scope, true).max(until.timestamp() + 60)))
            .value(":one", n(1))
            .value(":seen", n(item.seq));
        let (target_type, target_id) = target_of(&self.store, &charged.limit).await?;
        let name = format!("{}.{}", self.action.as_str(), charged.limit.scope.as_str());
        let policy = charged.policy;
        let audit = AuditEntry::at(now, &self.actor, "auth.lockout", &target_type, &target_id)
            .outcome(Outcome::Denied)
            .reason(format!("{name}: {} failed attempts allowed, then one every {} s; locked for {wait_secs} s", policy.burst, policy.refill_secs))
            .changes::<serde_json::Value, serde_json::Value>(
                None,
                Some(&json!({ "limit": name, "locked_until": timestamp(until), "lock_seconds": wait_secs })),
            );
        let conflict = || Error::Conflict("bucket changed".into());
        match self.store.commit(vec![Write::update(self.store.table(), &charged.key, SK, &mark, Some(conflict()))?], &audit).await {
            // A concurrent attempt recorded this lockout (or took the token
            // that just came back): either way, nothing more to record.
            Ok(()) | Err(Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The credential checked out: reset the account buckets (recording
    /// `auth.unlock` if a lockout had been recorded: the lock expired) and
    /// give the source address its token back, so only failures count.
    pub async fn succeeded(self) -> Result<()> {
        for charged in &self.charged {
            match charged.limit.scope {
                Scope::Account => self.reset(charged).await?,
                Scope::Ip => self.refund(charged).await?,
            }
        }
        Ok(())
    }

    async fn reset(&self, charged: &Charged) -> Result<()> {
        let Some(item) = self.store.get::<BucketItem>(&charged.key, SK).await? else {
            return Ok(());
        };
        let Some(locked_at) = item.locked_at.clone() else {
            self.store.delete(&charged.key, SK).await?;
            return Ok(());
        };
        let unchanged = Condition::new("locked_at = :locked_at").value(":locked_at", s(&locked_at));
        let delete = Write::delete_if(self.store.table(), &charged.key, SK, &unchanged, Some(Error::Conflict("bucket changed".into())))?;
        let (target_type, target_id) = target_of(&self.store, &charged.limit).await?;
        let actor = Actor { id: "rate-limiter".into(), kind: "system".into(), ..self.actor.clone() };
        let audit = AuditEntry::new(&actor, "auth.unlock", &target_type, &target_id).reason(format!(
            "{}.{}: the lock expired and an attempt succeeded; attempts refused while locked since {locked_at}: {}",
            self.action.as_str(),
            charged.limit.scope.as_str(),
            item.denied
        ));
        match self.store.commit(vec![delete], &audit).await {
            // Another success or an administrator unlocked it first.
            Ok(()) | Err(Error::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn refund(&self, charged: &Charged) -> Result<()> {
        // Gone or full (refilled meanwhile): nothing to give back.
        let refund = UpdateSpec::new("ADD tokens :one, seq :one")
            .condition("attribute_exists(pk) AND tokens < :burst")
            .value(":one", n(1))
            .value(":burst", n(charged.policy.burst));
        self.store.update(&charged.key, SK, &refund).await?;
        Ok(())
    }
}

/// Who an audit entry about a bucket names: the user when the account is
/// known, else the email's digest (as failed logins of unknown emails are
/// recorded), and an address by its digest.
async fn target_of(store: &Store, limit: &Limit) -> Result<(String, String)> {
    let digest = sha256_hex(limit.subject.as_bytes());
    match limit.scope {
        Scope::Ip => Ok(("ip".into(), digest)),
        Scope::Account => match Email::parse(&limit.subject) {
            Ok(email) => Ok(match users::find_by_email(store, &email).await? {
                Some(user) => ("user".into(), user.id),
                None => ("email".into(), digest),
            }),
            Err(_) => Ok(("user".into(), limit.subject.clone())),
        },
    }
}

/// What an administrator's unlock cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlocked {
    /// Whether any of the user's buckets was refusing attempts.
    pub was_locked: bool,
    /// The actions whose account buckets were removed, e.g. `login`.
    pub cleared: Vec<String>,
}

/// An administrator unlocks `user`: every account bucket of every action
/// (keyed by email or by user id) is deleted in the same transaction as the
/// `auth.unlock` entry. Source-address buckets are left to expire. Nothing
/// is written when the user has no bucket.
pub async fn unlock_account(store: &Journal, policies: &RateLimits, user: &User, actor: &Actor, reason: Option<&str>) -> Result<Unlocked> {
    let now_ms = Utc::now().timestamp_millis();
    let mut writes = Vec::new();
    let mut before = serde_json::Map::new();
    let mut cleared = Vec::new();
    let mut was_locked = false;
    for action in Action::ALL {
        let policy = policies.policy(*action, Scope::Account);
        for subject in [user.email.as_str(), user.id.as_str()] {
            let key = Limit::account(subject).key(*action);
            let Some(item) = store.get::<BucketItem>(&key, SK).await? else { continue };
            was_locked |= item.bucket().take(policy, now_ms).is_none();
            let keyed_by = if subject == user.id { "user_id" } else { "email" };
            before.insert(
                format!("{}.account.{keyed_by}", action.as_str()),
                json!({ "tokens": item.tokens, "locked_at": item.locked_at, "denied": item.denied }),
            );
            if !cleared.iter().any(|c| c == action.as_str()) {
                cleared.push(action.as_str().to_string());
            }
            let unchanged = Condition::new("seq = :seen").value(":seen", n(item.seq));
            let conflict = Error::Conflict("the user's sign-in attempts changed while unlocking; retry".into());
            writes.push(Write::delete_if(store.table(), &key, SK, &unchanged, Some(conflict))?);
        }
    }
    if writes.is_empty() {
        return Ok(Unlocked { was_locked: false, cleared });
    }
    let why = match reason {
        Some(r) => format!("unlocked by an administrator: {r}"),
        None => "unlocked by an administrator".to_string(),
    };
    let audit = AuditEntry::new(actor, "auth.unlock", "user", &user.id)
        .reason(why)
        .changes::<serde_json::Value, serde_json::Value>(Some(&serde_json::Value::Object(before)), None);
    store.commit(writes, &audit).await?;
    Ok(Unlocked { was_locked, cleared })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: Policy = Policy::new(5, 60);
    const T0: i64 = 1_700_000_000_000;

    fn secs(s: i64) -> i64 {
        T0 + s * 1000
    }

    #[test]
    fn burst_then_refusal_then_one_per_interval() {
        let mut bucket = Bucket::full(LOGIN, T0);
        for i in 0..5 {
            bucket = bucket.take(LOGIN, secs(i)).expect("within the burst");
        }
        assert_eq!(bucket.tokens, 0);
        assert!(bucket.take(LOGIN, secs(5)).is_none(), "the sixth attempt is refused");
        // The clock started at the first attempt (the bucket was full until then).
        assert_eq!(bucket.retry_after_secs(LOGIN, secs(5)), 55);
        assert_eq!(bucket.retry_after_secs(LOGIN, secs(59) + 1), 1, "rounded up, never 0 while empty");
        let after_a_minute = bucket.take(LOGIN, secs(60)).expect("one token earned");
        assert!(after_a_minute.take(LOGIN, secs(61)).is_none(), "only one");
        assert_eq!(after_a_minute.retry_after_secs(LOGIN, secs(61)), 59);
    }

    #[test]
    fn partial_intervals_are_kept_not_rounded() {
        let empty = Bucket { tokens: 0, updated_at_ms: T0 };
        // 90 s: one token, and the half interval carries over.
        let at_90 = empty.refilled(LOGIN, secs(90));
        assert_eq!(at_90, Bucket { tokens: 1, updated_at_ms: secs(60) });
        assert_eq!(at_90.refilled(LOGIN, secs(120)).tokens, 2);
        // Refill stops at the burst, and a full bucket's clock is `now`.
        assert_eq!(empty.refilled(LOGIN, secs(3600)), Bucket::full(LOGIN, secs(3600)));
        // A clock earlier than the stored tick earns nothing (and never panics).
        assert_eq!(empty.refilled(LOGIN, T0 - 5_000), empty);
        assert_eq!(empty.retry_after_secs(LOGIN, T0 - 5_000), 65);
    }

    #[test]
    fn full_at_marks_when_a_bucket_is_idle() {
        let two_left = Bucket { tokens: 3, updated_at_ms: T0 };
        assert_eq!(two_left.full_at_ms(LOGIN), secs(120));
        assert_eq!(Bucket::full(LOGIN, T0).full_at_ms(LOGIN), T0);
        // A policy lowered below the stored tokens is simply full.
        assert_eq!(Bucket { tokens: 9, updated_at_ms: T0 }.refilled(LOGIN, secs(1)).tokens, 5);
    }

    #[test]
    fn keys_hold_digests_not_personal_data() {
        let key = Limit::account(" Ada@Example.com ").key(Action::Login);
        assert_eq!(key, format!("RATE#login.account#{}", sha256_hex(b"ada@example.com")));
        assert!(!key.contains("ada"));
        let ip = Limit::ip(Some("203.0.113.9")).key(Action::TwoFactor);
        assert!(ip.starts_with("RATE#two_factor.ip#") && !ip.contains("203.0"));
        assert_eq!(Limit::ip(None), Limit::ip(Some("unknown")));
    }

    #[test]
    fn limits_parse_with_defaults_and_named_errors() {
        let limits = RateLimits::parse("login.account=3:10, refresh.ip=7:2").unwrap();
        assert_eq!(limits.policy(Action::Login, Scope::Account), Policy::new(3, 10));
        assert_eq!(limits.policy(Action::Refresh, Scope::Ip), Policy::new(7, 2));
        assert_eq!(limits.policy(Action::Login, Scope::Ip), RateLimits::default().policy(Action::Login, Scope::Ip));
        assert_eq!(RateLimits::parse("").unwrap(), RateLimits::default());
        for (bad, needle) in [
            ("login.user=3:10", "unknown limit \"login.user\""),
            ("login.account=3", "<burst>:<seconds>"),
            ("login.account=0:10", "burst"),
            ("login.account=3:0", "seconds"),
            ("login.account=3:x", "seconds"),
            ("login.account", "not <action>.<scope>"),
        ] {
            let err = RateLimits::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_follow_the_documented_policy() {
        let d = RateLimits::default();
        assert_eq!(d.policy(Action::Login, Scope::Account), Policy::new(5, 60));
        for action in Action::ALL {
            let account = d.policy(*action, Scope::Account);
            let ip = d.policy(*action, Scope::Ip);
            assert!(ip.burst > account.burst, "{action:?}: an address serves many accounts");
        }
        assert!(d.policy(Action::Refresh, Scope::Account).burst > d.policy(Action::Login, Scope::Account).burst);
    }
}
