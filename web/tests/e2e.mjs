// The dashboard end to end in headless Chromium (playwright-core driving
// Debian's chromium): a real `callwatch serve`, real softphones streaming
// fixture calls in real time, the supervisor page and two agent panels.
// Run by tests/dashboard.rs; screenshots go to $CALLWATCH_ARTIFACTS.
//
// Env: CALLWATCH_BIN, CALLWATCH_MODEL, CALLWATCH_ROOT, CALLWATCH_ARTIFACTS, CHROMIUM.
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const { CALLWATCH_BIN: bin, CALLWATCH_MODEL: model, CALLWATCH_ROOT: root, CALLWATCH_ARTIFACTS: artifacts } = process.env;
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const work = mkdtempSync(join(tmpdir(), "callwatch-e2e-"));
mkdirSync(artifacts, { recursive: true });
const log = (...a) => console.log(`[${(performance.now() / 1000).toFixed(1)} s]`, ...a);

const TOKENS = {
  supervisor: "e2e-supervisor-billing",
  a17: "e2e-agent-a17",
  a18: "e2e-agent-a18",
};
const config = join(work, "callwatch.toml");
writeFileSync(
  config,
  `data = "${join(work, "data")}"
model = "${model}"
rules = "${root}/rules/default.toml"
workers = 2
[[auth.tokens]]
token = "${TOKENS.supervisor}"
role = "supervisor:billing"
name = "Sam"
[[auth.tokens]]
token = "${TOKENS.a17}"
role = "agent:a17"
fast = true
[[auth.tokens]]
token = "${TOKENS.a18}"
role = "agent:a18"
`,
);

/// Starts the server (on `listen`) and resolves with its URL.
function serve(listen) {
  const child = spawn(bin, ["serve", "--config", config, "--listen", listen], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    child.on("exit", (code) => reject(new Error(`callwatch serve exited with ${code}`)));
    createInterface({ input: child.stdout }).once("line", (line) => {
      const addr = line.replace("callwatch serving on ", "");
      resolve({ child, url: `http://${addr}`, addr });
    });
  });
}

function softphone(url, wav, callId, agent, token, extra = []) {
  const child = spawn(
    bin,
    ["softphone", join(root, "tests/fixtures/calls", wav), "--server", url, "--token", token,
     "--agent", agent, "--team", "billing", "--call-id", callId, ...extra],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  return new Promise((resolve) => child.on("exit", resolve));
}

async function stop(server) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  server.child.removeAllListeners("exit");
  const exited = new Promise((resolve) => server.child.on("exit", resolve));
  server.child.kill("SIGTERM");
  await exited;
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  log("ok:", what);
}

const userData = mkdtempSync(join(tmpdir(), "callwatch-chromium-"));
const browser = await chromium.launchPersistentContext(userData, {
  executablePath: chromiumPath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
  viewport: { width: 1366, height: 768 },
});
let server = await serve("127.0.0.1:0");
const pages = [];
let failed = false;
try {
  const open = async (path) => {
    const page = await browser.newPage();
    page.on("pageerror", (e) => log("page error:", e.message));
    await page.goto(`${server.url}${path}`);
    await page.waitForSelector('#connection[data-state="connected"]', { timeout: 10_000 });
    pages.push(page);
    return page;
  };
  const dashboard = await open(`/#token=${TOKENS.supervisor}`);
  const panelA17 = await open(`/agent#token=${TOKENS.a17}`);
  const panelA18 = await open(`/agent#token=${TOKENS.a18}`);
  log("pages open on", server.url);

  // Two live calls of the team, in real time.
  const calls = Promise.all([
    softphone(server.url, "talk_over_call.wav", "e2e-talkover", "a17", TOKENS.a17),
    softphone(server.url, "abuse_call.wav", "e2e-abuse", "a18", TOKENS.a18),
  ]);
  for (const id of ["e2e-talkover", "e2e-abuse"]) {
    await dashboard.waitForSelector(`#wall-rows tr[data-call="${id}"]`, { timeout: 10_000 });
  }
  check(true, "both live calls are on the wall");

  await dashboard.click('#wall-rows tr[data-call="e2e-talkover"]');
  await dashboard.waitForFunction(() => document.querySelectorAll("#transcript .line").length >= 3, null, { timeout: 30_000 });
  check(true, "transcript lines appear in the call view");

  const shown = async (rule) => {
    const li = await dashboard.waitForSelector(`#feed li[data-rule="${rule}"]`, { timeout: 45_000 });
    const lag = Number(await li.getAttribute("data-shown-ms")) - Number(await li.getAttribute("data-recorded-ms"));
    check(lag < 3000, `${rule} shown ${lag} ms after it fired`);
  };
  await shown("talk_over.agent_interrupts");
  await dashboard.screenshot({ path: join(artifacts, "dashboard-call-live.png") });
  await shown("language.profanity_customer");

  await dashboard.click('#feed li[data-rule="talk_over.agent_interrupts"] button.claim');
  await dashboard.waitForSelector('#feed li[data-rule="talk_over.agent_interrupts"] .claimed:has-text("claimed by Sam")', { timeout: 5_000 });
  check(true, "claiming an alert shows who claimed it");

  await panelA17.waitForSelector('#nudges li[data-call="e2e-talkover"][data-rule="talk_over.agent_interrupts"]', { timeout: 10_000 });
  check(true, "agent a17's panel shows the nudge of its own call");
  await panelA18.waitForSelector('#nudges li[data-call="e2e-abuse"]', { timeout: 30_000 });
  check((await panelA17.$$('#nudges li[data-call="e2e-abuse"]')).length === 0, "a17's panel shows none of a18's nudges");
  check((await panelA18.$$('#nudges li[data-call="e2e-talkover"]')).length === 0, "a18's panel shows none of a17's nudges");
  await panelA17.screenshot({ path: join(artifacts, "agent-panel.png") });

  const codes = await calls;
  check(codes.every((c) => c === 0), "both softphones ended their calls");
  await dashboard.waitForSelector('#scorecard[data-final="true"]', { timeout: 15_000 });
  check(
    (await dashboard.textContent('#scorecard .item[data-rule="talk_over.agent_interrupts"] .status')) === "fail",
    "the final scorecard shows at call end, talk-over failed",
  );
  await dashboard.screenshot({ path: join(artifacts, "dashboard-call-ended.png") });
  await dashboard.click("#back");

  // Restart the server under the page.
  await stop(server);
  await dashboard.waitForSelector('#connection[data-state="disconnected"]', { timeout: 10_000 });
  check(true, "the page shows it is disconnected");
  server = await serve(server.addr);
  await dashboard.waitForSelector('#connection[data-state="connected"]', { timeout: 15_000 });
  check(true, "the page reconnects by itself");
  check(
    (await softphone(server.url, "hold_violation_call.wav", "e2e-hold", "a17", TOKENS.a17, ["--fast"])) === 0,
    "a call after the restart streams",
  );
  await dashboard.waitForSelector('#feed li[data-call="e2e-hold"][data-rule="hold.thank_on_return"]', { timeout: 20_000 });

  // Every alert in the store is in the feed, once.
  const storedAlerts = execFileSync(bin, ["watch", "--json", "--server", server.url, "--token", TOKENS.supervisor,
    "--resume-after", "c0", "--exit-after-calls", "3"], { encoding: "utf8" })
    .split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === "alert");
  const stored = storedAlerts.map((a) => `${a.call_id}/${a.id}`).sort();
  const onPage = (await dashboard.$$eval("#feed li", (lis) => lis.map((li) => `${li.dataset.call}/${li.dataset.id}`))).sort();
  check(JSON.stringify(onPage) === JSON.stringify(stored), `the feed holds all ${stored.length} stored alerts, each once`);
  // Alerts loaded as backlog after the restart show the lag they had when they fired.
  for (const a of storedAlerts) {
    const text = await dashboard.$eval(`#feed li[data-call="${a.call_id}"][data-id="${a.id}"] .lag`, (e) => e.textContent);
    const want = `lag ${Math.max(0, Math.round((a.emitted_s - a.end_s) * 1000))} ms`;
    check(text === want, `${a.call_id}/${a.id} ${a.rule_id}: page says "${text}", the alert fired with "${want}"`);
  }
  await dashboard.waitForSelector('#recent-rows tr[data-call="e2e-talkover"]', { timeout: 5_000 });
  await dashboard.screenshot({ path: join(artifacts, "dashboard-wall.png") });
  log("all checks passed");
} catch (e) {
  failed = true;
  console.error(e);
  for (const [i, page] of pages.entries()) await page.screenshot({ path: join(artifacts, `failure-${i}.png`) }).catch(() => {});
} finally {
  await browser.close();
  await stop(server).catch(() => {});
  rmSync(userData, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
