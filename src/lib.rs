//! mediagate: the application server between apps, an object store and a media-processing
//! service. Apps get upload credentials scoped to their own prefix; uploads trigger media
//! workflows.

/// The application state, how it is built and served.
pub mod app;
/// Who is calling: app-user JWTs and API keys.
pub mod auth;
/// Upload notifications and the callback parameters clients attach.
pub mod callbacks;
/// The command line.
pub mod cli;
/// Typed, layered configuration and its validation.
pub mod config;
/// What a caller may upload: keys, session policies, and the credential cache.
pub mod credentials;
/// The HTTP edge: routes, extractors, errors.
pub mod http;
/// Media attributes and their limits.
pub mod media;
/// The durable trigger queue, its worker and the sinks (MPS, webhooks).
pub mod processing;
/// Signature maths (pure).
pub mod signing;
/// Database access and migrations.
pub mod store;
/// Security Token Service clients.
pub mod sts;
/// Logging setup.
pub mod telemetry;
/// Shared habits of talking to outside HTTP services.
pub mod upstream;
/// Media workflows and the media-file rule.
pub mod workflows;
