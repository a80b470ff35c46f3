//! dbswatch: watches Alibaba Cloud DBS pre-checks and restores and tells people in chat.
//!
//! # Layout
//! - [`snapshot`], [`event`], [`diff`]: the pure core. Normalised state, events, and the
//!   function from (previous, next) snapshot to events. No IO, no clock.
//! - [`render`]: Handlebars templates to channel message bodies (pure).
//! - [`dbs`]: the DBS OpenAPI client: request signing, endpoints, response parsing, errors.
//! - [`notify`]: Slack, DingTalk, Feishu, WeCom and webhook senders and their signing.
//! - [`store`]: SQLite persistence (snapshots, polls, events, deliveries).
//! - [`config`]: the TOML configuration, `${VAR}` expansion and validation.
//! - [`pipeline`]: one poll of one watch and one delivery pass, wiring the above.
//! - [`scheduler`]: the cron-driven daemon loop.
//! - [`ratelimit`]: exact sliding-window send limits per receiver.
//! - [`simulate`]: the DBS double used by `demo`, `simulate` and the tests.
//! - [`cli`]: the command-line interface.
//! - [`accounts`]: each configured Alibaba Cloud account's credential chain and DBS clients.
//! - [`discovery`]: `[[discover]]` blocks turned into watches, and vanished ones retired.
//! - [`truth`]: restore status, job error codes and finished restores, asked for during polls.
//! - [`commands`]: bodies of `render`, `test-channel`, `whoami`, `plans`, `restores`.
//! - [`delivery`]: the delivery pass: merged messages, muted repeats, rate limits per receiver,
//!   the retry budget.
//! - [`health`]: poll health (`poll.failed`, `poll.recovered`) and per-watch poll backoff.

pub mod accounts;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dbs;
pub mod delivery;
pub mod demo;
pub mod diff;
pub mod discovery;
pub mod event;
pub mod health;
pub mod history;
pub mod notify;
pub mod pipeline;
pub mod priority;
pub mod ratelimit;
pub mod render;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod simulate;
pub mod snapshot;
pub mod store;
pub mod truth;
