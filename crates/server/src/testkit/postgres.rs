//! A real PostgreSQL for tests: initialised in a temporary directory,
//! listening on a loopback port, stopped (and removed) on drop.
//!
//! PostgreSQL refuses to run as root, so under root the cluster belongs to
//! `nobody` and every PostgreSQL binary runs through `runuser`. Binaries
//! come from `/usr/lib/postgresql/<newest>/bin`, else from `PATH`
//! (`scripts/setup.sh` installs the Debian `postgresql` package).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running PostgreSQL; [`PgServer::url`] is a database for one test.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_user: Option<&'static str>,
    running: bool,
}

/// The user a root test process runs PostgreSQL as.
const SERVICE_USER: &str = "nobody";

impl PgServer {
    /// Initialises a cluster (trust authentication, loopback only) and
    /// starts it.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("callwatch-pg").tempdir()?;
        let root = is_root();
        let as_user = root.then_some(SERVICE_USER);
        if root {
            let status = Command::new("chown")
                .args(["-R", SERVICE_USER])
                .arg(dir.path())
                .status()
                .context("chown")?;
            if !status.success() {
                bail!("cannot give {} to {SERVICE_USER}", dir.path().display());
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self {
            bin: bin_dir(),
            dir,
            port,
            as_user,
            running: false,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                "callwatch",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// `postgres://callwatch@127.0.0.1:<port>/<db>`, creating `db` first.
    pub fn database(&self, db: &str) -> Result<String> {
        let url = format!("postgres://callwatch@127.0.0.1:{}/postgres", self.port);
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        client.batch_execute(&format!("CREATE DATABASE \"{db}\""))?;
        Ok(self.url(db))
    }

    /// The URL of `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://callwatch@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop(&mut self) -> Result<()> {
        let data = self.data();
        self.run("pg_ctl", &["-D", path_str(&data)?, "-m", "fast", "-w", "stop"])?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same port and data.
    pub fn start_again(&mut self) -> Result<()> {
        let data = self.data();
        let log = self.dir.path().join("log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            path_str(self.dir.path())?
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        self.running = true;
        // pg_ctl -w waits for the server to accept connections; the TCP
        // listener is up by then, but check so a failure names the log.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("PostgreSQL did not listen on {}; see {}", self.port, log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The cluster's data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(program);
        let exe = if exe.exists() { exe } else { PathBuf::from(program) };
        let mut command = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| {
                format!(
                    "cannot run {} (is PostgreSQL installed? scripts/setup.sh)",
                    exe.display()
                )
            })?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            if let Err(e) = self.stop() {
                eprintln!("stopping the test PostgreSQL: {e:#}");
            }
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).unwrap_or_default()
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| format!("{}: not UTF-8", path.display()))
}
