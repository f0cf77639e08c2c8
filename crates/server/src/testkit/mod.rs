//! Real servers for tests: the engines a cluster shares, each started on a
//! loopback port in a temporary directory and stopped on drop. Used by the
//! unit tests here and, with the `testkit` feature, by `tests/`. Not used
//! by the service itself.

mod nats;
mod postgres;

pub use nats::NatsServer;
pub use postgres::PgServer;
