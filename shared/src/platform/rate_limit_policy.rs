//! Brute-force limit policies, as configured (`KEEL_RATE_LIMITS`): how many
//! attempts each action allows per scope and how fast they refill. The
//! buckets that enforce them are `identity::rate_limits`.

use std::collections::BTreeMap;

/// What is being attempted; each action has its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Login,
    Refresh,
    TwoFactor,
    /// A public email-marketing subscription (each one may send an email).
    Subscribe,
}

impl Action {
    pub const ALL: &'static [Action] = &[Action::Login, Action::Refresh, Action::TwoFactor, Action::Subscribe];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Refresh => "refresh",
            Action::TwoFactor => "two_factor",
            Action::Subscribe => "subscribe",
        }
    }
}

/// Whose attempts a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// One account (an email address or a user id).
    Account,
    /// One source address.
    Ip,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[Scope::Account, Scope::Ip];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Ip => "ip",
        }
    }
}

/// A token bucket's shape: `burst` attempts at once, then one more every
/// `refill_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub burst: u32,
    pub refill_secs: u32,
}

impl Policy {
    pub const fn new(burst: u32, refill_secs: u32) -> Policy {
        Policy { burst, refill_secs }
    }

    pub fn interval_ms(self) -> i64 {
        i64::from(self.refill_secs) * 1000
    }
}

/// The policy of every (action, scope): the defaults below, overridden by
/// `KEEL_RATE_LIMITS` (see [`RateLimits::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    policies: BTreeMap<(Action, Scope), Policy>,
}

impl Default for RateLimits {
    fn default() -> Self {
        let policies = BTreeMap::from([
            // An account gets five wrong passwords, then one more a minute.
            ((Action::Login, Scope::Account), Policy::new(5, 60)),
            // One address may serve many people (offices, carrier NAT).
            ((Action::Login, Scope::Ip), Policy::new(50, 5)),
            // Refresh tokens are 256-bit random: failures are rare mistakes,
            // so these are generous; they stop floods, not guessing.
            ((Action::Refresh, Scope::Account), Policy::new(20, 15)),
            ((Action::Refresh, Scope::Ip), Policy::new(100, 1)),
            // A six-digit code: each sign-in challenge locks after five wrong
            // codes; across challenges, ten tries, then one every five
            // minutes (under 300 guesses a day against a million codes).
            ((Action::TwoFactor, Scope::Account), Policy::new(10, 300)),
            ((Action::TwoFactor, Scope::Ip), Policy::new(50, 5)),
            // Every subscription counts (there is no "success" to give the
            // token back): an address 5 at once then one per 10 minutes (its
            // confirmation emails are further limited to one per 10 minutes),
            // a source address 20 then one a minute.
            ((Action::Subscribe, Scope::Account), Policy::new(5, 600)),
            ((Action::Subscribe, Scope::Ip), Policy::new(20, 60)),
        ]);
        RateLimits { policies }
    }
}

/// Bounds that keep a configured policy meaningful.
const MAX_BURST: u32 = 100_000;
const MAX_REFILL_SECS: u32 = 86_400;

impl RateLimits {
    /// Overrides in the form `login.account=5:60,login.ip=50:5`: for an
    /// `<action>.<scope>`, a burst and the seconds it takes to earn one more
    /// attempt. Pairs not named keep their default.
    pub fn parse(spec: &str) -> std::result::Result<RateLimits, String> {
        let mut limits = RateLimits::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry.split_once('=').ok_or_else(|| format!("{entry:?} is not <action>.<scope>=<burst>:<seconds>"))?;
            let key = limits
                .policies
                .keys()
                .find(|(a, sc)| format!("{}.{}", a.as_str(), sc.as_str()) == name.trim())
                .copied()
                .ok_or_else(|| format!("unknown limit {:?} (known: {})", name.trim(), limits.names().join(", ")))?;
            let (burst, refill) = value.split_once(':').ok_or_else(|| format!("{entry:?}: the value must be <burst>:<seconds>"))?;
            let burst: u32 =
                burst.trim().parse().ok().filter(|b| (1..=MAX_BURST).contains(b)).ok_or_else(|| format!("{entry:?}: burst must be 1 to {MAX_BURST}"))?;
            let refill: u32 = refill
                .trim()
                .parse()
                .ok()
                .filter(|r| (1..=MAX_REFILL_SECS).contains(r))
                .ok_or_else(|| format!("{entry:?}: seconds must be 1 to {MAX_REFILL_SECS}"))?;
            limits.policies.insert(key, Policy::new(burst, refill));
        }
        Ok(limits)
    }

    pub fn policy(&self, action: Action, scope: Scope) -> Policy {
        self.policies.get(&(action, scope)).copied().unwrap_or_else(|| RateLimits::default().policies[&(action, scope)])
    }

    fn names(&self) -> Vec<String> {
        self.policies.keys().map(|(a, sc)| format!("{}.{}", a.as_str(), sc.as_str())).collect()
    }
}
