//! The gRPC service: softphones stream calls in ([`ingest`]), each call a
//! [`session`] whatever carries it, supervisors'
//! dashboards watch alerts and calls ([`supervisor`]), operators reload the
//! rules ([`admin`]), agents' panels get their nudges ([`agent`]), and
//! browsers load the dashboard ([`web`]) and speak gRPC-web. Everything a supervisor sees is written to the
//! [`store`] before the [`feed`] publishes it, so a reconnecting dashboard
//! replays what it missed from the store. Both share the vocabulary of
//! [`cursor`] and [`filter`], and import nothing of each other's but the
//! feed's use of the store.
//!
//! The wire types are generated from `proto/callwatch/v1/*.proto`; this
//! module translates between them and the pipeline's own types, which know
//! nothing of the wire.

pub mod admin;
pub mod agent;
pub mod agents;
pub mod audit;
pub mod auth;
pub mod calls;
pub mod config;
pub mod context;
pub mod cursor;
pub mod desks;
pub mod feed;
pub mod filter;
pub mod ingest;
pub mod listener;
pub mod lockout;
pub mod retention;
pub mod rpc_metrics;
pub mod server;
pub mod session;
pub mod slots;
pub mod store;
pub mod supervisor;
pub mod test_nats;
pub mod tls;
pub mod transcript_filter;
pub mod web;

pub use callwatch_proto::pb;
