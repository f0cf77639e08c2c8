//! The schema's migrations: SQL files applied in order, each once, in one
//! transaction with its version row. An advisory lock keeps two nodes
//! starting together from applying the same one twice.

use postgres::Client;

/// (version, SQL), in order. A released migration is never edited; a
/// change is a new file.
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/V1__schema.sql")),
    (2, include_str!("migrations/V2__search.sql")),
];

/// Any constant shared by every callwatch node: the advisory lock's key.
const LOCK_KEY: i64 = 0x63_61_6c_6c_77_61_74_63;

/// Applies the migrations this database lacks; returns how many.
pub fn migrate(client: &mut Client) -> Result<usize, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS callwatch_schema (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")?;
    let current: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM callwatch_schema", &[])?
        .get(0);
    let mut applied = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO callwatch_schema (version) VALUES ($1)", &[version])?;
        applied += 1;
    }
    tx.commit()?;
    Ok(applied)
}
