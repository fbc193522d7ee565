//! A user's standing as each path needs it: admitting a request, reserving for a new upload,
//! judging a verified object, and what the user and operators see.

use crate::auth::Principal;
use crate::credentials::UserSegment;
use crate::store::{Held, Store, UploadRow, Usage, UserChange, UserRow};

use super::{
    Addition, MediaKind, PlanLimits, QuotasConfig, Refusal, check, day_start, reservation,
};

/// The longest plan name remembered from a token (a longer one is no configured plan).
const MAX_PLAN_CHARS: usize = 64;

/// Why a standing could not be decided or was refused.
#[derive(Debug, thiserror::Error)]
pub enum StandingError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// The user segment of `subject` as a token or API key names it (`apikey:{name}` for keys).
pub fn segment_of(subject: &str) -> UserSegment {
    match subject.strip_prefix("apikey:") {
        Some(name) => UserSegment::for_api_key(name),
        None => UserSegment::for_subject(subject),
    }
}

/// Lets `principal` in unless they are suspended, and remembers the plan their token names
/// (written only when it changed), so an object they announce later without a request counts
/// against it. One read per request: a suspension holds on every instance at once.
pub async fn admit(store: &Store, principal: &Principal) -> Result<Option<UserRow>, StandingError> {
    let owner = principal.segment.as_str();
    let user = store.user(owner).await?;
    if user.as_ref().is_some_and(|u| u.suspended) {
        metrics::counter!("mediagate_quota_refusals_total", "quota" => "user_suspended")
            .increment(1);
        return Err(Refusal::Suspended.into());
    }
    let plan = principal
        .plan
        .as_deref()
        .filter(|p| p.chars().count() <= MAX_PLAN_CHARS);
    let known = user.as_ref().is_some_and(|u| {
        u.subject.as_deref() == Some(&principal.subject) && u.plan.as_deref() == plan
    });
    if !known {
        store.remember_user(owner, &principal.subject, plan).await?;
    }
    Ok(user)
}

/// What a new upload holds: its user's row, locked until the upload is recorded, and what it
/// reserves. `None` without quotas.
pub struct Reserved {
    pub held: Held,
    pub bytes: u64,
}

/// Holds `principal`'s row and checks that an upload of `key` declared at `declared` bytes
/// fits their plan at `now_ms`; refused (nothing written) when it does not.
pub async fn reserve(
    store: &Store,
    config: &QuotasConfig,
    principal: &Principal,
    key: &str,
    declared: Option<u64>,
    now_ms: i64,
) -> Result<Option<Reserved>, StandingError> {
    if !config.enabled() {
        return Ok(None);
    }
    let plan = principal.plan.as_deref();
    let token = Some((
        principal.subject.as_str(),
        plan.filter(|p| p.chars().count() <= MAX_PLAN_CHARS),
    ));
    let held = store
        .hold_user(principal.segment.as_str(), token, day_start(now_ms), "")
        .await?;
    if held.user.suspended {
        return Err(refused(Refusal::Suspended));
    }
    let (_, limits) = plan_of(config, &held.user, principal.plan.as_deref())?;
    let bytes = reservation(limits, declared);
    let add = Addition {
        bytes,
        today: true,
        kind: MediaKind::of(key),
    };
    check(limits, &held.usage, add, now_ms).map_err(refused)?;
    Ok(Some(Reserved { held, bytes }))
}

/// Whether the verified object of `upload` (`size` bytes, as the store has it) may be
/// processed: refused when its user is suspended or it takes them past their plan. When it
/// fits, its size counts from now on, so the next upload of the user is judged with it.
pub async fn judge_verified(
    store: &Store,
    config: &QuotasConfig,
    upload: &UploadRow,
    size: u64,
    now_ms: i64,
) -> Result<Option<Refusal>, anyhow::Error> {
    if !config.enabled() {
        let suspended = store
            .user(&upload.owner)
            .await?
            .is_some_and(|u| u.suspended);
        return Ok(suspended.then_some(Refusal::Suspended));
    }
    let today = day_start(now_ms);
    let held = store
        .hold_user(&upload.owner, None, today, &upload.id)
        .await?;
    if held.user.suspended {
        return Ok(Some(Refusal::Suspended));
    }
    let limits = match plan_of(config, &held.user, None) {
        Ok((_, limits)) => limits,
        Err(StandingError::Refused(r)) => return Ok(Some(r)),
        Err(StandingError::Store(e)) => return Err(e),
    };
    let add = Addition {
        bytes: size,
        today: upload.created_at >= today,
        kind: MediaKind::of(&upload.object_key),
    };
    if let Err(refusal) = check(limits, &held.usage, add, now_ms) {
        count(&refusal);
        return Ok(Some(refusal));
    }
    held.settle(&upload.id, i64::try_from(size).unwrap_or(i64::MAX))
        .await?;
    Ok(None)
}

/// A user's standing as they or an operator see it.
#[derive(Debug, Clone)]
pub struct Standing {
    pub owner: String,
    pub user: Option<UserRow>,
    /// The plan they are on (none without quotas), and whether it is configured.
    pub plan: Option<String>,
    pub limits: Option<PlanLimits>,
    pub usage: Usage,
}

/// The standing of `owner` (whose token, if this is their own request, names `token_plan`).
pub async fn standing(
    store: &Store,
    config: &QuotasConfig,
    owner: &str,
    token_plan: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<Standing> {
    let user = store.user(owner).await?;
    let usage = store.usage(owner, day_start(now_ms)).await?;
    let (plan, limits) = match config.plan(user.as_ref(), token_plan) {
        Ok(Some((name, limits))) => (Some(name.to_owned()), Some(limits.clone())),
        Ok(None) => (None, None),
        Err(Refusal::UnknownPlan(name)) => (Some(name), None),
        Err(_) => (None, None),
    };
    Ok(Standing {
        owner: owner.to_owned(),
        user,
        plan,
        limits,
        usage,
    })
}

/// An operator's change to the user `subject`; an override must name a configured plan.
pub async fn change(
    store: &Store,
    config: &QuotasConfig,
    subject: &str,
    change: &UserChange,
    who: &crate::store::Actor,
) -> Result<UserRow, StandingError> {
    if let Some(Some(plan)) = &change.plan_override
        && !config.plans.contains_key(plan)
    {
        return Err(Refusal::UnknownPlan(plan.clone()).into());
    }
    let detail = serde_json::json!({
        "subject": subject,
        "plan_override": change.plan_override,
        "suspended": change.suspended,
    });
    let owner = segment_of(subject);
    Ok(store
        .change_user(owner.as_str(), subject, change, who, &detail)
        .await?)
}

fn plan_of<'a>(
    config: &'a QuotasConfig,
    user: &'a UserRow,
    token_plan: Option<&'a str>,
) -> Result<(&'a str, &'a PlanLimits), StandingError> {
    match config.plan(Some(user), token_plan) {
        Ok(Some(plan)) => Ok(plan),
        Ok(None) => Err(anyhow::anyhow!("no plans are configured").into()),
        Err(r) => Err(refused(r)),
    }
}

/// `refusal`, counted.
fn refused(refusal: Refusal) -> StandingError {
    count(&refusal);
    refusal.into()
}

fn count(refusal: &Refusal) {
    let quota = match refusal {
        Refusal::Over { quota, .. } => quota.as_str(),
        Refusal::Suspended => "user_suspended",
        Refusal::UnknownPlan(_) => "unknown_plan",
    };
    metrics::counter!("mediagate_quota_refusals_total", "quota" => quota).increment(1);
}
