// The agent panel: nudges for the agent's own calls, quietly. The server
// holds a nudge while the agent is mid-sentence (unless critical), so what
// arrives here is meant to be read now.
import { CallState, Severity } from "../gen/callwatch/v1/common_pb.js";
import { agentDesk, clock, connected, el, keepFollowing, login, logout, message, setConnection, supervisor } from "./api.js";

async function main(): Promise<void> {
  const { me, headers } = await login("agent", (me) =>
    me.role.startsWith("agent:") ? null : "the agent panel needs an agent's token",
  );
  document.getElementById("me")!.textContent = `${me.name} · ${me.role}`;
  document.getElementById("logout")!.onclick = () => logout("agent");
  const status = document.getElementById("call")!;
  const list = document.getElementById("nudges")!;
  await keepFollowing(
    async () => {
      await supervisor.whoAmI({}, { headers });
      connected();
      const stream = agentDesk.watchNudges({}, { headers });
      for await (const u of stream) {
        const up = u.update;
        if (up.case === "call") {
          const live = up.value.state === CallState.LIVE;
          status.textContent = live ? `On call ${up.value.callId}` : `Call ${up.value.callId} ended`;
          status.dataset.live = String(live);
        } else if (up.case === "nudge") {
          const a = up.value;
          const item = el(
            "li",
            { class: `nudge sev-${Severity[a.severity].toLowerCase()}`, "data-call": a.callId, "data-id": String(a.id), "data-rule": a.ruleId },
            el("div", { class: "msg" }, a.message),
            ...(a.script ? [el("div", { class: "script" }, `Try: “${a.script}”`)] : []),
            el("div", { class: "meta" }, `${clock(a.startS)} in call ${a.callId}`),
          );
          list.prepend(item);
          // Old nudges fade: the newest is what matters.
          for (const old of [...list.children].slice(5)) old.classList.add("old");
        } else if (up.case === "retraction") {
          list.querySelector(`li[data-call="${CSS.escape(up.value.callId)}"][data-id="${up.value.alertId}"]`)?.remove();
        }
      }
    },
    (e) => setConnection(false, message(e)),
  );
}

void main();
