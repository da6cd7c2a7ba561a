//! tern: a thread-per-core TLS termination proxy for Linux.
//!
//! Layers, each importing only those below it: `cli`/`config` (arguments → checked config),
//! `control` (threads, signals), `worker` (pinned runtime, listeners, limits, drain), `proxy`
//! (per-connection loops), and the sans-IO `tls` and `http` layers; `stats` and `util` are
//! leaves any layer may use. `proxyproto` (the sans-IO PROXY protocol) is a leaf as well.

pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod http;
pub mod logging;
pub mod privileges;
pub mod proxy;
pub mod proxyproto;
pub mod route;
pub mod stats;
pub mod tls;
pub mod util;
pub mod worker;
