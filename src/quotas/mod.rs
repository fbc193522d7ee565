//! Permission control: which plan a user is on, what it allows, and whether an upload fits in
//! what they have used. The rules are pure functions; usage is counted by the store from the
//! uploads themselves (the store's sizes once verified) under a lock on the user's row, so
//! every instance on the database hands out the same quota once.

pub mod standing;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{Usage, UserRow};
use crate::workflows::{AUDIO_EXTENSIONS, VIDEO_EXTENSIONS};

/// One UTC day, in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// `[quotas]`: plans, and how a user's plan is named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// `MEDIAGATE__QUOTAS__PLAN_CLAIM`, default `plan`: the JWT claim naming the user's plan.
    pub plan_claim: String,
    /// `MEDIAGATE__QUOTAS__DEFAULT_PLAN`, default `free`: the plan of tokens without the claim
    /// and of API keys.
    pub default_plan: String,
    /// `[quotas.plans.<name>]`; none (default): no quotas.
    pub plans: BTreeMap<String, PlanLimits>,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            plan_claim: "plan".into(),
            default_plan: "free".into(),
            plans: BTreeMap::new(),
        }
    }
}

/// What a plan allows; every limit absent is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanLimits {
    /// The largest file.
    pub max_file_bytes: Option<u64>,
    /// Uploads started per UTC day.
    pub uploads_per_day: Option<u64>,
    /// Bytes uploaded per UTC day.
    pub bytes_per_day: Option<u64>,
    /// Everything stored and not rejected or expired.
    pub bytes_total: Option<u64>,
    /// The media kinds the plan may upload (by the file's extension).
    pub kinds: Option<Vec<MediaKind>>,
}

/// What a file is, by its extension (the MPS media table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Video,
    Audio,
}

impl MediaKind {
    /// The kind of the file `key` names; none for a name without a listed extension.
    pub fn of(key: &str) -> Option<MediaKind> {
        let name = key.rsplit('/').next().unwrap_or(key);
        let (_, ext) = name.rsplit_once('.')?;
        let ext = ext.to_ascii_lowercase();
        if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
            Some(MediaKind::Video)
        } else if AUDIO_EXTENSIONS.contains(&ext.as_str()) {
            Some(MediaKind::Audio)
        } else {
            None
        }
    }
}

/// The limit an upload would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    MaxFileBytes,
    UploadsPerDay,
    BytesPerDay,
    BytesTotal,
    Kinds,
}

impl Quota {
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::MaxFileBytes => "max_file_bytes",
            Quota::UploadsPerDay => "uploads_per_day",
            Quota::BytesPerDay => "bytes_per_day",
            Quota::BytesTotal => "bytes_total",
            Quota::Kinds => "kinds",
        }
    }
}

/// Why a user may not upload (this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Over `quota`; for a day window, free again after `retry_after_seconds`.
    #[error("{message}")]
    Over {
        quota: Quota,
        message: String,
        retry_after_seconds: Option<u64>,
    },
    #[error("this user is suspended")]
    Suspended,
    /// The plan a token (or an operator) names is not configured.
    #[error("plan {0:?} is not configured")]
    UnknownPlan(String),
}

/// An upload as it counts against a plan.
#[derive(Debug, Clone, Copy)]
pub struct Addition {
    /// Its size: declared, the store's, or what is reserved for it.
    pub bytes: u64,
    /// Whether it is one more upload today.
    pub today: bool,
    pub kind: Option<MediaKind>,
}

impl QuotasConfig {
    /// Whether plans are configured at all.
    pub fn enabled(&self) -> bool {
        !self.plans.is_empty()
    }

    /// The plan a user is on: an operator's override, else the one their token names (or the
    /// one their most recent token named, for an object announced without a request), else
    /// the default; refused when it is not configured. `None` without quotas.
    pub fn plan<'a>(
        &'a self,
        user: Option<&'a UserRow>,
        token_plan: Option<&'a str>,
    ) -> Result<Option<(&'a str, &'a PlanLimits)>, Refusal> {
        if !self.enabled() {
            return Ok(None);
        }
        let name = user
            .and_then(|u| u.plan_override.as_deref())
            .or(token_plan)
            .or(user.and_then(|u| u.plan.as_deref()))
            .unwrap_or(&self.default_plan);
        match self.plans.get_key_value(name) {
            Some((name, limits)) => Ok(Some((name.as_str(), limits))),
            None => Err(Refusal::UnknownPlan(name.to_owned())),
        }
    }

    /// Every problem of the section, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.plan_claim.is_empty() {
            problems.push("quotas.plan_claim: must not be empty".to_owned());
        }
        if self.enabled() && !self.plans.contains_key(&self.default_plan) {
            problems.push(format!(
                "quotas.default_plan: {:?} is not one of quotas.plans",
                self.default_plan
            ));
        }
        for (name, plan) in &self.plans {
            if name.is_empty() || name.len() > 64 {
                problems.push(format!(
                    "quotas.plans.{name}: a plan name is 1-64 characters"
                ));
            }
            if plan.kinds.as_ref().is_some_and(Vec::is_empty) {
                problems.push(format!(
                    "quotas.plans.{name}.kinds: an empty list allows nothing; leave it out for every kind"
                ));
            }
        }
        problems
    }
}

/// Whether `add` fits in `limits` given `usage` (which does not count it yet), at `now`
/// (Unix ms). The first limit it passes refuses it.
pub fn check(
    limits: &PlanLimits,
    usage: &Usage,
    add: Addition,
    now_ms: i64,
) -> Result<(), Refusal> {
    let over = |quota: Quota, message: String, day: bool| Refusal::Over {
        quota,
        message,
        retry_after_seconds: day.then(|| seconds_to_next_day(now_ms)),
    };
    if let Some(kinds) = &limits.kinds
        && !add.kind.is_some_and(|k| kinds.contains(&k))
    {
        return Err(over(
            Quota::Kinds,
            "this plan does not allow this kind of media".into(),
            false,
        ));
    }
    if let Some(max) = limits.max_file_bytes
        && add.bytes > max
    {
        return Err(over(
            Quota::MaxFileBytes,
            format!("this plan allows files of at most {max} bytes"),
            false,
        ));
    }
    let used = |n: i64| u64::try_from(n).unwrap_or(0);
    if let Some(max) = limits.uploads_per_day
        && add.today
        && used(usage.uploads_today) + 1 > max
    {
        return Err(over(
            Quota::UploadsPerDay,
            format!("this plan allows {max} uploads a day (UTC)"),
            true,
        ));
    }
    if let Some(max) = limits.bytes_per_day
        && add.today
        && used(usage.bytes_today).saturating_add(add.bytes) > max
    {
        return Err(over(
            Quota::BytesPerDay,
            format!("this plan allows {max} bytes a day (UTC)"),
            true,
        ));
    }
    if let Some(max) = limits.bytes_total
        && used(usage.bytes_total).saturating_add(add.bytes) > max
    {
        return Err(over(
            Quota::BytesTotal,
            format!("this plan allows {max} bytes stored"),
            false,
        ));
    }
    Ok(())
}

/// When the UTC day of `now_ms` began (Unix ms).
pub fn day_start(now_ms: i64) -> i64 {
    now_ms.div_euclid(DAY_MS) * DAY_MS
}

/// Seconds until the next UTC day, at least 1.
pub fn seconds_to_next_day(now_ms: i64) -> u64 {
    let left = day_start(now_ms) + DAY_MS - now_ms;
    u64::try_from((left + 999) / 1000).unwrap_or(1).max(1)
}

/// What an upload reserves before its size is known: its declared size, else the plan's
/// largest file (else nothing).
pub fn reservation(limits: &PlanLimits, declared: Option<u64>) -> u64 {
    declared.or(limits.max_file_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free() -> PlanLimits {
        PlanLimits {
            max_file_bytes: Some(1000),
            uploads_per_day: Some(2),
            bytes_per_day: Some(1500),
            bytes_total: Some(5000),
            kinds: Some(vec![MediaKind::Video]),
        }
    }

    fn usage(uploads_today: i64, bytes_today: i64, bytes_total: i64) -> Usage {
        Usage {
            uploads_today,
            bytes_today,
            bytes_total,
        }
    }

    fn video(bytes: u64) -> Addition {
        Addition {
            bytes,
            today: true,
            kind: Some(MediaKind::Video),
        }
    }

    const NOON: i64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS + DAY_MS / 2;

    fn quota(r: Result<(), Refusal>) -> Option<(Quota, Option<u64>)> {
        match r {
            Err(Refusal::Over {
                quota,
                retry_after_seconds,
                ..
            }) => Some((quota, retry_after_seconds)),
            Ok(()) => None,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_limit_refuses_with_its_name_and_day_windows_say_when_they_free() {
        let plan = free();
        assert_eq!(
            quota(check(&plan, &usage(1, 500, 500), video(1000), NOON)),
            None
        );
        assert_eq!(
            quota(check(&plan, &usage(0, 0, 0), video(1001), NOON)),
            Some((Quota::MaxFileBytes, None))
        );
        assert_eq!(
            quota(check(&plan, &usage(2, 0, 0), video(1), NOON)),
            Some((Quota::UploadsPerDay, Some(43_200)))
        );
        assert_eq!(
            quota(check(&plan, &usage(1, 1000, 1000), video(501), NOON)),
            Some((Quota::BytesPerDay, Some(43_200)))
        );
        assert_eq!(
            quota(check(&plan, &usage(0, 0, 4500), video(501), NOON)),
            Some((Quota::BytesTotal, None))
        );
        let audio = Addition {
            kind: Some(MediaKind::Audio),
            ..video(1)
        };
        assert_eq!(
            quota(check(&plan, &usage(0, 0, 0), audio, NOON)),
            Some((Quota::Kinds, None))
        );
        // An upload from an earlier day counts against the total only.
        let earlier = Addition {
            today: false,
            ..video(900)
        };
        assert_eq!(quota(check(&plan, &usage(2, 1500, 0), earlier, NOON)), None);
        // Nothing limited: anything goes.
        let open = PlanLimits::default();
        assert_eq!(
            quota(check(
                &open,
                &usage(i64::MAX, i64::MAX, i64::MAX),
                video(u64::MAX),
                NOON
            )),
            None
        );
    }

    #[test]
    fn the_day_is_the_utc_day() {
        assert_eq!(seconds_to_next_day(day_start(NOON) + DAY_MS - 1), 1);
        assert_eq!(seconds_to_next_day(day_start(NOON)), 86_400);
        assert_eq!(day_start(NOON) % DAY_MS, 0);
    }

    #[test]
    fn a_plan_is_the_override_then_the_token_then_the_remembered_one_then_the_default() {
        let mut config = QuotasConfig::default();
        assert_eq!(
            config.plan(None, Some("gold")),
            Ok(None),
            "no plans, no quotas"
        );
        config.plans.insert("free".into(), free());
        config.plans.insert("pro".into(), PlanLimits::default());
        let name =
            |r: Result<Option<(&str, &PlanLimits)>, Refusal>| r.map(|p| p.unwrap().0.to_owned());
        assert_eq!(name(config.plan(None, None)), Ok("free".into()));
        let mut row = UserRow {
            owner: "alice".into(),
            subject: Some("alice".into()),
            plan: Some("pro".into()),
            plan_override: None,
            suspended: false,
        };
        assert_eq!(name(config.plan(Some(&row), None)), Ok("pro".into()));
        assert_eq!(
            name(config.plan(Some(&row), Some("free"))),
            Ok("free".into())
        );
        row.plan_override = Some("pro".into());
        assert_eq!(
            name(config.plan(Some(&row), Some("free"))),
            Ok("pro".into())
        );
        assert_eq!(
            config.plan(None, Some("gold")),
            Err(Refusal::UnknownPlan("gold".into()))
        );
        assert!(config.problems().is_empty());
        config.default_plan = "basic".into();
        assert_eq!(config.problems().len(), 1);
    }

    #[test]
    fn kinds_come_from_the_extension_table() {
        assert_eq!(MediaKind::of("u/a/1/trip.MP4"), Some(MediaKind::Video));
        assert_eq!(MediaKind::of("u/a/1/song.flac"), Some(MediaKind::Audio));
        assert_eq!(MediaKind::of("u/a/1/README"), None);
        assert_eq!(
            reservation(&free(), None),
            1000,
            "no size declared: the largest file"
        );
        assert_eq!(reservation(&free(), Some(10)), 10);
    }
}
