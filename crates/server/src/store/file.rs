//! The store's file: created readable by its owner only (0600; SQLite
//! gives the `-wal` and `-shm` files the database's mode), and encrypted
//! with SQLCipher when a key is given. A wrong key, a key for a plain store
//! or none for an encrypted one is one clear error before anything is
//! written: never a corrupt or half-rewritten file.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OptionalExtension};

/// Opens (or creates) the database at `path`, keyed with `key` (a
/// passphrase) when given, and checks that its pages can be read.
pub fn open(path: &Path, key: Option<&str>) -> Result<Connection> {
    create_private(path)?;
    let conn = Connection::open(path).with_context(|| format!("{}: cannot open the store", path.display()))?;
    let cipher: Option<String> = conn.query_row("PRAGMA cipher_version", [], |r| r.get(0)).optional()?;
    if cipher.is_some() {
        // SQLCipher would also print a failed decryption to stderr; the
        // error below says it in one line.
        conn.query_row("PRAGMA cipher_log_level = NONE", [], |_| Ok(()))
            .optional()?;
    }
    if let Some(key) = key {
        // Without SQLCipher `PRAGMA key` is silently ignored: the store
        // would be written in clear.
        if cipher.is_none() {
            bail!("{}: this build cannot encrypt the store (no SQLCipher)", path.display());
        }
        conn.pragma_update(None, "key", key)?;
    }
    // The first read of a page: SQLCipher finds a wrong key here.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .with_context(|| {
            format!(
                "store {} cannot be opened: wrong key or not a callwatch store",
                path.display()
            )
        })?;
    Ok(conn)
}

/// Creates the store file readable by its owner only, or makes an
/// existing one (and the `-wal` and `-shm` files an earlier run left) so.
/// SQLite gives new `-wal` and `-shm` files the database's mode.
fn create_private(path: &Path) -> Result<()> {
    let private = || std::fs::Permissions::from_mode(0o600);
    let created = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::set_permissions(path, private()),
        Err(e) => Err(e),
    };
    created.with_context(|| format!("{}: cannot create the store file", path.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::set_permissions(&side, private()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("{}: cannot make it private", Path::new(&side).display()))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::{contains, ended_call, file_bytes, fresh};
    use crate::store::sqlite::Sqlite;
    use crate::store::CallStore;

    #[test]
    fn the_files_are_private_to_the_owner() {
        let names = ["callwatch.sqlite3", "callwatch.sqlite3-wal", "callwatch.sqlite3-shm"];
        let modes = |dir: &Path| -> Vec<u32> {
            names
                .iter()
                .map(|n| std::fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777)
                .collect()
        };
        let (store, dir) = fresh();
        ended_call(&store, "c1", 10_000, "hello");
        assert_eq!(modes(dir.path()), [0o600; 3]);
        // Files an older build left readable are made private on open.
        for n in names {
            std::fs::set_permissions(dir.path().join(n), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let again = Sqlite::open(dir.path()).unwrap();
        assert_eq!(modes(dir.path()), [0o600; 3]);
        drop((store, again));
    }

    #[test]
    fn an_encrypted_store_opens_only_with_its_key_and_shows_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open_keyed(dir.path(), Some("correct horse")).unwrap();
        ended_call(&store, "c1", 10_000, "marmalade hippopotamus");
        assert!(
            !contains(&file_bytes(dir.path()), "marmalade"),
            "plaintext in the encrypted files"
        );
        drop(store);
        assert!(!contains(&file_bytes(dir.path()), "marmalade"));
        let reopened = Sqlite::open_keyed(dir.path(), Some("correct horse")).unwrap();
        let record = reopened.record("c1").unwrap().unwrap();
        assert_eq!(record.transcript[0].text, "marmalade hippopotamus");
        drop(reopened);
        for key in [Some("wrong horse"), None] {
            let err = format!("{:#}", Sqlite::open_keyed(dir.path(), key).err().expect("refused"));
            assert!(
                err.contains("cannot be opened: wrong key or not a callwatch store"),
                "{err}"
            );
        }
        let plain = tempfile::tempdir().unwrap();
        drop(Sqlite::open(plain.path()).unwrap());
        let err = format!(
            "{:#}",
            Sqlite::open_keyed(plain.path(), Some("k")).err().expect("refused")
        );
        assert!(err.contains("wrong key or not a callwatch store"), "{err}");
        // A refused open changed nothing: the right key still opens it.
        assert!(Sqlite::open_keyed(dir.path(), Some("correct horse")).is_ok());
    }
}
