//! The web dashboard and agent panel in a real browser: `web/tests/e2e.mjs`
//! drives headless Chromium (Debian's, through playwright-core) against a
//! real `callwatch serve` with softphones streaming fixture calls. The
//! set-up (`make test`) installs Chromium and builds `web/`; screenshots go
//! to target/e2e-artifacts/.

mod common;

use std::path::Path;
use std::process::Command;

use common::q8_model;

#[test]
fn supervisor_dashboard_and_agent_panels_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("web/node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `make build` (it installs and builds web/)"
    );
    let chromium = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium is not installed: run `make deps`");
    let artifacts = root.join("target/e2e-artifacts");
    let status = Command::new("node")
        .arg(root.join("web/tests/e2e.mjs"))
        .current_dir(root.join("web"))
        .env("CALLWATCH_BIN", assert_cmd::cargo::cargo_bin!("callwatch"))
        .env("CALLWATCH_MODEL", q8_model())
        .env("CALLWATCH_ROOT", root)
        .env("CALLWATCH_ARTIFACTS", &artifacts)
        .env("CHROMIUM", chromium)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the browser test failed; screenshots in {}",
        artifacts.display()
    );
}
