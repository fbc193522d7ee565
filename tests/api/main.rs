//! Integration tests: the real application on port 0 against loopback fakes.

mod support;

mod abuse;
mod admin;
mod auth;
mod backend_events;
mod bad_input;
mod browser;
mod cli;
mod config_keys;
mod fuzz;
mod harness;
mod migrations;
mod mps_outcome_api;
mod notifications;
mod openapi;
mod outcomes;
mod presign;
mod protection;
mod quotas;
mod reports;
mod rgw;
mod rgw_outage;
mod schemathesis;
mod streams;
mod sts_errors;
mod uploads;
mod verification;
