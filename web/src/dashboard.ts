// The supervisor's page: wall of live calls, alert feed, call view, recent
// calls. Everything comes from the Supervisor service over gRPC-web.
import { create } from "@bufbuild/protobuf";
import {
  type Alert,
  type CallInfo,
  CallState,
  Channel,
  type Scorecard,
  Severity,
  type TranscriptRevision,
} from "../gen/callwatch/v1/common_pb.js";
import { type AlertEvent, WatchAlertsRequestSchema } from "../gen/callwatch/v1/supervisor_pb.js";
import { clock, connected, el, type Headers, keepFollowing, login, logout, message, setConnection, supervisor } from "./api.js";

/// One alert in the feed, with what happened to it since.
interface FeedAlert {
  alert: Alert;
  agentId: string;
  team: string;
  recordedMs: number;
  shownMs: number;
  retracted: boolean;
  claimedBy: string;
}

const state = {
  headers: { authorization: "" } as Headers,
  myTeam: "",
  cursor: "",
  alerts: new Map<string, FeedAlert>(),
  calls: new Map<string, CallInfo>(),
  teamFilter: "",
  sort: "urgency" as "urgency" | "agent" | "duration" | "alerts",
  selected: "",
  watch: null as AbortController | null,
};

const key = (callId: string, id: bigint) => `${callId}/${id}`;
const severityName = (s: Severity) => Severity[s].toLowerCase();

// ---------------------------------------------------------------- feed

async function followFeed(): Promise<void> {
  const request = create(WatchAlertsRequestSchema, {
    resumeAfter: state.cursor,
    backlog: state.cursor ? 0 : 500,
  });
  // A unary call first: the page is live once the server has answered.
  await supervisor.whoAmI({}, { headers: state.headers });
  connected();
  void refreshCalls();
  const stream = supervisor.watchAlerts(request, { headers: state.headers });
  for await (const event of stream) {
    // Live-only events (service.store_failed) have no cursor: keep the last.
    if (event.cursor) state.cursor = event.cursor;
    onFeedEvent(event);
  }
}

function onFeedEvent(event: AlertEvent): void {
  const now = Date.now();
  switch (event.event.case) {
    case "alert": {
      const alert = event.event.value;
      const item: FeedAlert = {
        alert,
        agentId: event.agentId,
        team: event.team,
        recordedMs: Number(event.atUnixMs),
        shownMs: now,
        retracted: false,
        claimedBy: "",
      };
      state.alerts.set(key(alert.callId, alert.id), item);
      document.getElementById("feed")!.prepend(feedItem(item));
      break;
    }
    case "retraction": {
      const r = event.event.value;
      const item = state.alerts.get(key(r.callId, r.alertId));
      if (item) item.retracted = true;
      updateFeedItem(r.callId, r.alertId);
      break;
    }
    case "acknowledgement": {
      const a = event.event.value;
      const item = state.alerts.get(key(a.callId, a.alertId));
      if (item) item.claimedBy = a.by;
      updateFeedItem(a.callId, a.alertId);
      break;
    }
    case "callStarted":
    case "callEnded":
      void refreshCalls();
      if (event.event.case === "callEnded" && event.callId === state.selected) openCall(state.selected);
      break;
  }
  renderWall();
  if (state.selected === event.callId) renderPins();
}

function feedItem(item: FeedAlert): HTMLLIElement {
  const a = item.alert;
  const li = el("li", {
    class: `alert sev-${severityName(a.severity)}`,
    "data-call": a.callId,
    "data-id": String(a.id),
    "data-rule": a.ruleId,
    "data-recorded-ms": String(item.recordedMs),
    "data-shown-ms": String(item.shownMs),
  });
  fillFeedItem(li, item);
  return li;
}

function fillFeedItem(li: HTMLElement, item: FeedAlert): void {
  const a = item.alert;
  // The lag the alert had when it fired: from the end of the words (or
  // moment) it is about to the rules raising it, on the call's clock. The
  // same for an alert loaded as backlog as for one seen live.
  const lag = Math.max(0, Math.round((a.emittedS - a.endS) * 1000));
  const delivery = Math.max(0, item.shownMs - item.recordedMs);
  const claim = item.claimedBy
    ? el("span", { class: "claimed" }, `claimed by ${item.claimedBy}`)
    : el("button", { class: "claim", type: "button" }, "Claim");
  if (!item.claimedBy) (claim as HTMLButtonElement).onclick = () => claimAlert(item);
  li.classList.toggle("retracted", item.retracted);
  li.classList.toggle("is-claimed", !!item.claimedBy);
  li.replaceChildren(
    el(
      "div",
      { class: "head" },
      el("span", { class: "sev" }, Severity[a.severity]),
      " ",
      el("b", {}, a.ruleId),
      ` · ${item.agentId} · `,
      el("a", { href: "#", class: "at" }, clock(a.startS)),
      " · ",
      el(
        "span",
        {
          class: "lag",
          title: `fired ${lag} ms after the words; shown ${delivery} ms after the server recorded it`,
        },
        `lag ${lag} ms`,
      ),
    ),
    el("div", { class: "msg" }, a.message),
    el("div", { class: "evidence" }, item.retracted ? "retracted: the final transcript disagreed" : a.evidence),
    el("div", { class: "actions" }, claim),
  );
  (li.querySelector("a.at") as HTMLAnchorElement).onclick = (ev) => {
    ev.preventDefault();
    openCall(a.callId);
  };
}

function updateFeedItem(callId: string, id: bigint): void {
  const item = state.alerts.get(key(callId, id));
  const li = document.querySelector<HTMLElement>(`#feed li[data-call="${CSS.escape(callId)}"][data-id="${id}"]`);
  if (item && li) fillFeedItem(li, item);
}

async function claimAlert(item: FeedAlert): Promise<void> {
  try {
    const ack = await supervisor.acknowledgeAlert(
      { callId: item.alert.callId, alertId: item.alert.id, note: "" },
      { headers: state.headers },
    );
    item.claimedBy = ack.by;
  } catch (e) {
    item.claimedBy = message(e).replace(/^.*claimed by /, "");
  }
  updateFeedItem(item.alert.callId, item.alert.id);
}

// ---------------------------------------------------------------- wall

async function refreshCalls(): Promise<void> {
  try {
    const list = await supervisor.listCalls({ team: state.teamFilter, recent: 30 }, { headers: state.headers });
    state.calls = new Map(list.calls.map((c) => [c.callId, c]));
    renderWall();
    renderRecent();
  } catch {
    // The feed shows the connection; the wall tries again shortly.
  }
}

function openAlerts(callId: string): number[] {
  const counts = [0, 0, 0, 0];
  for (const item of state.alerts.values()) {
    if (item.alert.callId === callId && !item.retracted) counts[item.alert.severity]++;
  }
  return counts;
}

function renderWall(): void {
  const live = [...state.calls.values()].filter((c) => c.state === CallState.LIVE);
  const urgency = (c: CallInfo) => {
    const n = openAlerts(c.callId);
    return n[Severity.CRITICAL] * 1e6 + n[Severity.WARNING] * 1e3 + n[Severity.INFO];
  };
  const by: Record<typeof state.sort, (a: CallInfo, b: CallInfo) => number> = {
    urgency: (a, b) => urgency(b) - urgency(a) || Number(a.startedUnixMs - b.startedUnixMs),
    agent: (a, b) => a.agentId.localeCompare(b.agentId),
    duration: (a, b) => b.audioS - a.audioS,
    alerts: (a, b) => urgency(b) - urgency(a),
  };
  // Calls with a critical alert always rise to the top.
  const critical = (c: CallInfo) => (openAlerts(c.callId)[Severity.CRITICAL] > 0 ? 0 : 1);
  live.sort((a, b) => critical(a) - critical(b) || by[state.sort](a, b));
  const rows = live.map((c) => {
    const n = openAlerts(c.callId);
    const speaking = c.speaking.map((ch) => (ch === Channel.CUSTOMER ? "customer" : "agent")).join(" + ") || "—";
    const tr = el(
      "tr",
      { "data-call": c.callId, class: n[Severity.CRITICAL] ? "critical" : "" },
      el("td", {}, c.agentId),
      el("td", {}, c.team),
      el("td", { class: "num" }, clock(c.audioS).slice(0, 5)),
      el("td", { class: `activity ${c.activity.replace(" ", "-")}` }, c.activity || "—"),
      el("td", {}, speaking),
      el(
        "td",
        { class: "counts" },
        ...[Severity.CRITICAL, Severity.WARNING, Severity.INFO]
          .filter((s) => n[s] > 0)
          .map((s) => el("span", { class: `count sev-${severityName(s)}` }, String(n[s]))),
      ),
    );
    tr.onclick = () => openCall(c.callId);
    return tr;
  });
  document.getElementById("wall-rows")!.replaceChildren(...rows);
  document.getElementById("wall-empty")!.hidden = rows.length > 0;
  const teams = new Set([...state.calls.values()].map((c) => c.team));
  const select = document.getElementById("team") as HTMLSelectElement;
  if (!state.myTeam) {
    for (const team of teams) {
      if (![...select.options].some((o) => o.value === team)) select.append(el("option", { value: team }, team));
    }
  }
}

function renderRecent(): void {
  const ended = [...state.calls.values()].filter((c) => c.state !== CallState.LIVE);
  const rows = ended.map((c) => {
    const tr = el(
      "tr",
      { "data-call": c.callId },
      el("td", {}, new Date(Number(c.startedUnixMs)).toLocaleTimeString()),
      el("td", {}, c.agentId),
      el("td", { class: "num" }, clock(c.audioS).slice(0, 5)),
      el("td", {}, CallState[c.state].toLowerCase()),
      el("td", { class: "num" }, String(c.alerts)),
      el("td", { class: "num" }, c.score === undefined ? "—" : `${c.score.toFixed(0)} %`),
    );
    tr.onclick = () => openCall(c.callId);
    return tr;
  });
  document.getElementById("recent-rows")!.replaceChildren(...rows);
}

// ---------------------------------------------------------------- call view

const view = {
  info: null as CallInfo | null,
  lines: new Map<string, TranscriptRevision>(),
  /// Speech from live voice events; a stored call has none and is drawn from its finals.
  voice: { agent: [] as Span[], customer: [] as Span[] },
  holds: [] as Span[],
  scorecard: null as Scorecard | null,
  /// The latest call time seen (the call's info is refreshed less often).
  latest: 0,
};

type Span = [number, number | null];

function openCall(callId: string): void {
  state.watch?.abort();
  state.selected = callId;
  view.info = state.calls.get(callId) ?? null;
  view.lines.clear();
  view.voice = { agent: [], customer: [] };
  view.holds = [];
  view.scorecard = null;
  view.latest = 0;
  document.body.dataset.view = "call";
  const abort = new AbortController();
  state.watch = abort;
  renderCall();
  void watchCall(callId, abort.signal);
}

function closeCall(): void {
  state.watch?.abort();
  state.selected = "";
  document.body.dataset.view = "wall";
}

async function watchCall(callId: string, signal: AbortSignal): Promise<void> {
  try {
    for await (const u of supervisor.watchCall({ callId }, { headers: state.headers, signal })) {
      const up = u.update;
      switch (up.case) {
        case "call":
          view.info = up.value;
          break;
        case "transcript": {
          const t = up.value;
          const k = `${t.channel}/${t.utteranceId}`;
          const old = view.lines.get(k);
          if (!old || !old.isFinal) view.lines.set(k, t);
          view.latest = Math.max(view.latest, t.endS);
          break;
        }
        case "voice": {
          const lane = up.value.channel === Channel.CUSTOMER ? view.voice.customer : view.voice.agent;
          if (up.value.speaking) lane.push([up.value.tS, null]);
          else for (const span of lane) if (span[1] === null) span[1] = up.value.tS;
          view.latest = Math.max(view.latest, up.value.tS);
          break;
        }
        case "control":
          if (up.value.action === "hold") view.holds.push([up.value.tS, null]);
          if (up.value.action === "unhold") for (const span of view.holds) if (span[1] === null) span[1] = up.value.tS;
          view.latest = Math.max(view.latest, up.value.tS);
          break;
        case "scorecard":
          view.scorecard = up.value;
          break;
        case "alert":
        case "retraction":
        case "acknowledgement":
          break;
      }
      renderCall();
    }
  } catch (e) {
    if (!signal.aborted) document.getElementById("call-error")!.textContent = message(e);
  }
}

function renderCall(): void {
  const info = view.info;
  document.getElementById("call-title")!.textContent = info
    ? `Call ${info.callId} · agent ${info.agentId} · team ${info.team} · ${
        info.state === CallState.LIVE ? info.activity || "live" : CallState[info.state].toLowerCase()
      } · ${clock(info.audioS)}`
    : state.selected;
  renderTimeline();
  const lines = [...view.lines.values()].sort((a, b) => a.startS - b.startS);
  document.getElementById("transcript")!.replaceChildren(
    ...lines.map((t) =>
      el(
        "div",
        { class: `line ${t.channel === Channel.CUSTOMER ? "customer" : "agent"} ${t.isFinal ? "final" : "partial"}` },
        el("span", { class: "t" }, clock(t.startS)),
        el("span", { class: "who" }, t.channel === Channel.CUSTOMER ? "customer" : "agent"),
        el("span", { class: "text" }, t.text),
      ),
    ),
  );
  renderScorecard();
}

function renderTimeline(): void {
  const end = timelineEnd();
  const finals = [...view.lines.values()].filter((t) => t.isFinal);
  const fromFinals = (channel: Channel): Span[] =>
    finals.filter((t) => t.channel === channel).map((t) => [t.startS, t.endS] as Span);
  const live = view.voice.agent.length + view.voice.customer.length > 0;
  const agent = live ? view.voice.agent : fromFinals(Channel.AGENT);
  const customer = live ? view.voice.customer : fromFinals(Channel.CUSTOMER);
  const x = (t: number) => `${Math.min(100, (100 * t) / end).toFixed(2)}%`;
  const w = (s: number, e: number | null) => `${Math.max(0, (100 * ((e ?? end) - s)) / end).toFixed(2)}%`;
  const bars = (lane: Span[], cls: string, y: number) =>
    lane.map(([s, e]) => `<rect class="${cls}" x="${x(s)}" y="${y}" width="${w(s, e)}" height="14"/>`).join("");
  const overlaps: string[] = [];
  for (const [as, ae] of agent) {
    for (const [cs, ce] of customer) {
      const s = Math.max(as, cs);
      const e = Math.min(ae ?? end, ce ?? end);
      if (e > s) overlaps.push(`<rect class="overlap" x="${x(s)}" y="0" width="${w(s, e)}" height="36"><title>talk-over</title></rect>`);
    }
  }
  document.getElementById("timeline")!.innerHTML = `
    <div class="labels"><span>agent</span><span>customer</span><span>hold</span><span>alerts</span></div>
    <svg width="100%" height="74" role="img" aria-label="who spoke when">
      ${overlaps.join("")}
      ${bars(agent, "agent", 2)}${bars(customer, "customer", 20)}${bars(view.holds, "hold", 38)}
      <g id="pins"></g>
    </svg>`;
  renderPins();
}

function timelineEnd(): number {
  return Math.max(view.info?.audioS ?? 0, view.latest, 10);
}

function renderPins(): void {
  const pins = document.getElementById("pins");
  if (!pins) return;
  const end = timelineEnd();
  pins.innerHTML = [...state.alerts.values()]
    .filter((i) => i.alert.callId === state.selected && !i.retracted)
    .map(
      (i) =>
        `<g class="pin sev-${severityName(i.alert.severity)}"><title>${clock(i.alert.startS)} ${i.alert.ruleId}</title>` +
        `<rect x="${((100 * i.alert.startS) / end).toFixed(2)}%" y="56" width="4" height="16"/></g>`,
    )
    .join("");
}

function renderScorecard(): void {
  const card = view.scorecard;
  const box = document.getElementById("scorecard")!;
  if (!card) return void box.replaceChildren(el("p", { class: "muted" }, "no scorecard yet"));
  box.dataset.final = String(card.isFinal);
  box.replaceChildren(
    el(
      "h3",
      {},
      `QA scorecard ${card.isFinal ? "(final)" : "(live)"} · score ${card.score === undefined ? "—" : `${card.score.toFixed(1)} %`}`,
    ),
    ...card.sections.map((s) =>
      el(
        "section",
        {},
        el("h4", {}, s.name),
        ...s.items.map((i) =>
          el(
            "div",
            { class: `item status-${i.status.replace("/", "")}`, "data-rule": i.ruleId },
            el("span", { class: "status" }, i.status),
            el("span", {}, i.item + (i.tS !== undefined ? ` @${clock(i.tS)}` : "")),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------- start

async function main(): Promise<void> {
  const { me, headers } = await login("supervisor", (me) =>
    me.role.startsWith("agent:") ? "this is an agent's token: open /agent for the agent panel" : null,
  );
  state.headers = headers;
  state.myTeam = me.team;
  document.getElementById("me")!.textContent = `${me.name} · ${me.team ? `team ${me.team}` : "all teams"}`;
  document.getElementById("logout")!.onclick = () => logout("supervisor");
  document.getElementById("back")!.onclick = closeCall;
  const select = document.getElementById("team") as HTMLSelectElement;
  if (me.team) {
    select.replaceChildren(el("option", { value: me.team }, me.team));
    select.disabled = true;
  }
  select.onchange = () => {
    state.teamFilter = select.value;
    void refreshCalls();
  };
  for (const th of document.querySelectorAll<HTMLElement>("th[data-sort]")) {
    th.onclick = () => {
      state.sort = th.dataset.sort as typeof state.sort;
      renderWall();
    };
  }
  setInterval(() => void refreshCalls(), 1000);
  await keepFollowing(followFeed, (e) => {
    setConnection(false, message(e));
  });
}

void main();
