// What both pages share: the gRPC-web clients (generated from ../proto),
// the token, reconnection, and small DOM helpers.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AgentDesk } from "../gen/callwatch/v1/agent_pb.js";
import { Supervisor, type WhoAmIResponse } from "../gen/callwatch/v1/supervisor_pb.js";

// Same origin as the page: `callwatch serve` serves both.
const transport = createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true });
export const supervisor = createClient(Supervisor, transport);
export const agentDesk = createClient(AgentDesk, transport);

export type Headers = { authorization: string };

/// Call time as people read it: 01:03.3.
export function clock(t: number): string {
  const tenths = Math.round(t * 10);
  const mm = String(Math.floor(tenths / 600)).padStart(2, "0");
  const ss = String(Math.floor(tenths / 10) % 60).padStart(2, "0");
  return `${mm}:${ss}.${tenths % 10}`;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/// Shows whether the page is connected (also for tests: `data-state`).
export function setConnection(connected: boolean, detail = ""): void {
  const badge = document.getElementById("connection")!;
  badge.dataset.state = connected ? "connected" : "disconnected";
  badge.textContent = connected ? "live" : `disconnected — reconnecting${detail ? ` (${detail})` : ""}`;
}

/// Errors retrying cannot fix.
export function isFinal(e: unknown): boolean {
  const code = ConnectError.from(e).code;
  return code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.InvalidArgument;
}

export function message(e: unknown): string {
  return ConnectError.from(e).rawMessage;
}

/// Runs `stream` until it ends for good, reconnecting after lost
/// connections with a growing pause. `stream` resumes where it left off,
/// and calls `connected()` once the server has answered.
let connectedSince: number | null = null;

/// The server answered: the page is live.
export function connected(): void {
  connectedSince = Date.now();
  setConnection(true);
}

export async function keepFollowing(stream: () => Promise<void>, onFatal: (e: unknown) => void): Promise<void> {
  let pause = 250;
  for (;;) {
    try {
      await stream();
      setConnection(false, "the server ended the stream");
    } catch (e) {
      if (isFinal(e)) return onFatal(e);
      setConnection(false, message(e));
    }
    await new Promise((r) => setTimeout(r, pause));
    pause = connectedSince !== null && Date.now() - connectedSince > 10_000 ? 250 : Math.min(pause * 2, 4000);
    connectedSince = null;
  }
}

/// Asks for a token (kept in this browser) until the server accepts it.
export async function login(kind: "supervisor" | "agent", accept: (me: WhoAmIResponse) => string | null): Promise<{ me: WhoAmIResponse; headers: Headers }> {
  const key = `callwatch.token.${kind}`;
  const dialog = document.getElementById("login") as HTMLFormElement;
  const input = dialog.querySelector("input")!;
  const error = dialog.querySelector(".error")!;
  let token = new URLSearchParams(location.hash.slice(1)).get("token") ?? localStorage.getItem(key);
  for (;;) {
    if (token) {
      const headers = { authorization: `Bearer ${token}` };
      try {
        const me = await supervisor.whoAmI({}, { headers });
        const refusal = accept(me);
        if (!refusal) {
          localStorage.setItem(key, token);
          dialog.hidden = true;
          return { me, headers };
        }
        error.textContent = refusal;
      } catch (e) {
        error.textContent = message(e);
      }
      localStorage.removeItem(key);
    }
    dialog.hidden = false;
    input.focus();
    token = await new Promise<string>((resolve) => {
      dialog.onsubmit = (ev) => {
        ev.preventDefault();
        resolve(input.value.trim());
      };
    });
  }
}

export function logout(kind: "supervisor" | "agent"): void {
  localStorage.removeItem(`callwatch.token.${kind}`);
  location.hash = "";
  location.reload();
}
