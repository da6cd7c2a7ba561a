//! tern: a thread-per-core TLS termination proxy for Linux.
//!
//! Layers, each importing only those below it: `cli`/`config` (arguments → checked config),
//! `control` (threads, signals), `metrics` (the exposition and health endpoint, read from
//! outside the workers), `worker` (pinned runtime, listeners, limits, drain), `proxy`
//! (per-connection loops), `frontdoor` (what runs between accept and the handshake's crypto:
//! PROXY header, allow/deny, per-client limits, handshake admission), `backend` (pools,
//! balancing, health), the immutable `generation` a reload replaces, and the sans-IO `tls` and
//! `http` layers; `stats` and `util` are leaves any layer may use, and so are `sys`
//! (service-manager notification, self-confinement) and `proxyproto` (the sans-IO PROXY
//! protocol).

pub mod backend;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod frontdoor;
pub mod generation;
pub mod http;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod privileges;
pub mod proxy;
pub mod proxyproto;
pub mod report;
pub mod route;
pub mod stats;
pub mod sys;
pub mod tls;
pub mod upgrade;
pub mod util;
pub mod watch;
pub mod worker;
