//! Who is calling: app users with a JWT from the app's identity provider (HS256 with a shared
//! secret, or RS256/ES256 checked against a JWKS), and server-side callers with an API key
//! (`mgk_...`, stored as a SHA-256 hash).

mod jwks;
mod verified;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::credentials::UserSegment;
use crate::store::Store;

pub use jwks::Jwks;

/// API keys start with this, so they are never mistaken for JWTs.
pub const API_KEY_PREFIX: &str = "mgk_";

/// Characters after the prefix: base64url of 32 bytes, unpadded.
const API_KEY_CHARS: usize = 43;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub` of the JWT, or `apikey:{name}`.
    pub subject: String,
    /// Where this caller's uploads live, derived from the subject.
    pub segment: UserSegment,
    /// The plan the token names (`quotas.plan_claim`); none for API keys and tokens without
    /// the claim. A claim that is not a string reads as an empty name, which no plan has.
    pub plan: Option<String>,
}

/// Why a request is not authenticated. Every variant is a 401 to the client; the message is
/// safe to show (it never echoes the token).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("unknown API key")]
    UnknownApiKey,
    /// The identity provider's keys could not be fetched; still a 401 to the caller.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Required by the validation; a number, which it may write with a fraction.
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    /// The others, among them the one naming the plan.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

pub struct Authenticator {
    hs256: Option<DecodingKey>,
    jwks: Option<Jwks>,
    /// What a token's claims must satisfy, per accepted algorithm.
    hs256_rules: Validation,
    rs256_rules: Validation,
    es256_rules: Validation,
    leeway: u64,
    verified: verified::VerifiedTokens,
    /// The claim naming the caller's plan.
    plan_claim: String,
    store: Store,
    /// Decides `exp` and `nbf`, and how long an accepted token is remembered.
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    pub fn new(
        config: &AuthConfig,
        plan_claim: &str,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let jwks = match &config.jwks_url {
            Some(url) => Some(Jwks::new(
                url.clone(),
                Duration::from_secs(config.jwks_cache_seconds),
                Duration::from_secs(config.jwks_min_refetch_seconds),
                clock.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            hs256: config
                .jwt_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            jwks,
            hs256_rules: validation(config, Algorithm::HS256),
            rs256_rules: validation(config, Algorithm::RS256),
            es256_rules: validation(config, Algorithm::ES256),
            leeway: config.leeway_seconds,
            verified: verified::VerifiedTokens::new(),
            plan_claim: plan_claim.to_owned(),
            store,
            clock,
        })
    }

    /// Authenticates the value of an `Authorization` header.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|h| {
                let (scheme, token) = h.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if let Some(secret) = token.strip_prefix(API_KEY_PREFIX) {
            return self.api_key(secret).await;
        }
        self.jwt(token).await
    }

    async fn api_key(&self, secret: &str) -> Result<Principal, AuthError> {
        // Only the shape `generate_api_key` makes can exist: anything else is refused without
        // a database lookup.
        if secret.len() != API_KEY_CHARS
            || !secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthError::UnknownApiKey);
        }
        let name = self
            .store
            .api_key_name(&hash_api_key(&format!("{API_KEY_PREFIX}{secret}")))
            .await?
            .ok_or(AuthError::UnknownApiKey)?;
        Ok(Principal {
            subject: format!("apikey:{name}"),
            segment: UserSegment::for_api_key(&name),
            plan: None,
        })
    }

    async fn jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let (now, at) = (self.clock.now().timestamp(), self.clock.instant());
        if let Some(principal) = self.verified.get(token, now, at) {
            return Ok(principal);
        }
        // `alg: none` and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        // The HS256 secret is only ever used for HS256, and JWKS keys only for RS256/ES256,
        // so a token cannot pick which key material verifies it (no HS/RS confusion).
        let jwks_key;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().ok_or(AuthError::Invalid)?,
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::Invalid)?;
                jwks_key = jwks.key_for(header.kid.as_deref(), header.alg).await?;
                &jwks_key
            }
            _ => return Err(AuthError::Invalid),
        };
        let rules = match header.alg {
            Algorithm::HS256 => &self.hs256_rules,
            Algorithm::RS256 => &self.rs256_rules,
            _ => &self.es256_rules,
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, rules)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        // The validation made sure `exp` is there; its times are checked here, against the
        // app's clock (the validation reads the system's), by the validation's rule: a token
        // is accepted until `leeway` past its `exp`, and from `leeway` before its `nbf`.
        let leeway = i64::try_from(self.leeway).unwrap_or(i64::MAX);
        let second = |t: f64| t.floor() as i64;
        let exp = claims
            .exp
            .filter(|e| e.is_finite())
            .ok_or(AuthError::Invalid)?;
        let accepted_until = second(exp).saturating_add(leeway);
        if now > accepted_until {
            return Err(AuthError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| !nbf.is_finite() || second(nbf) > now.saturating_add(leeway))
        {
            return Err(AuthError::Invalid);
        }
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid);
        }
        let plan = claims.rest.get(&self.plan_claim).map(|v| match v {
            serde_json::Value::String(name) => name.clone(),
            _ => String::new(),
        });
        let principal = Principal {
            segment: UserSegment::for_subject(&claims.sub),
            subject: claims.sub,
            plan,
        };
        self.verified.insert(token, &principal, accepted_until, at);
        Ok(principal)
    }
}

/// The claims a token must carry and satisfy to be accepted with `alg`.
fn validation(config: &AuthConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = config.leeway_seconds;
    // `Authenticator::jwt` checks both against the app's clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims = HashSet::from(["exp".to_owned(), "sub".to_owned()]);
    match &config.audience {
        Some(aud) => v.set_audience(&[aud]),
        None => v.validate_aud = false,
    }
    if let Some(iss) = &config.issuer {
        v.set_issuer(&[iss]);
        v.required_spec_claims.insert("iss".into());
    }
    v
}

/// A new API key: `mgk_` + 32 random bytes, base64url. Returned once, stored only as a hash.
pub fn generate_api_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 hex of the whole key. API keys carry 256 random bits, so a fast hash is enough:
/// there is nothing to brute-force, and lookups stay one indexed query.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `[auth]`: how callers prove who they are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `MEDIAGATE__AUTH__JWT_SECRET`: HS256 secret for app tokens (at least 32 bytes).
    pub jwt_secret: Option<SecretString>,
    /// `MEDIAGATE__AUTH__JWKS_URL`: JWKS of the identity provider, for RS256/ES256 tokens.
    pub jwks_url: Option<String>,
    /// `MEDIAGATE__AUTH__ISSUER`: required `iss` when set.
    pub issuer: Option<String>,
    /// `MEDIAGATE__AUTH__AUDIENCE`: required `aud` when set.
    pub audience: Option<String>,
    /// `MEDIAGATE__AUTH__ADMIN_TOKEN`: bearer token for `/v1/admin/*`.
    pub admin_token: Option<SecretString>,
    /// `MEDIAGATE__AUTH__LEEWAY_SECONDS`, default 30: clock skew allowed on `exp`/`nbf`.
    pub leeway_seconds: u64,
    /// `MEDIAGATE__AUTH__JWKS_CACHE_SECONDS`, default 600: how long fetched keys are trusted.
    pub jwks_cache_seconds: u64,
    /// `MEDIAGATE__AUTH__JWKS_MIN_REFETCH_SECONDS`, default 30: an unknown `kid` refetches the
    /// JWKS at most this often, so forged tokens cannot make us hammer the identity provider.
    pub jwks_min_refetch_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            admin_token: None,
            leeway_seconds: 30,
            jwks_cache_seconds: 600,
            jwks_min_refetch_seconds: 30,
        }
    }
}
