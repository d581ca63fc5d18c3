/**
 * A thin typed client for the Bright Run API (/api/v1/). Every path, body and response type
 * comes from `schema.d.ts`, generated from /api/schema/ (`make ts-client`); this file adds only
 * what the schema cannot say: authentication, one error type, walking pages, and the websocket
 * ticket flow.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { components, paths } from "./schema";

export type { components, paths } from "./schema";
export type Schemas = components["schemas"];
export type Job = Schemas["Job"];
export type JobDetail = Schemas["JobDetail"];
export type ErrorBody = Schemas["ErrorBody"];

/** Every non-2xx answer of the API: `{"error": {"code", "message", "detail"}}`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: unknown;

  constructor(status: number, body: ErrorBody | undefined) {
    super(body?.message ?? `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = body?.code ?? "error";
    this.detail = body?.detail ?? null;
  }
}

export interface BrightRunOptions {
  /** e.g. "https://api.example.com" (no trailing slash); "" for the same origin */
  baseUrl: string;
  /** the API token (Authorization: Token <key>); omit to rely on the session cookie */
  token?: string | (() => string | undefined);
  fetch?: typeof globalThis.fetch;
}

export type BrightRunClient = Client<paths> & {
  /** Every row of a paginated list (follows `next`), e.g. `all("/api/v1/jobs/", {query: {status: "training"}})`. */
  all: typeof allRows;
  /** Open the job's live updates (`/ws/jobs/<id>/`), authenticated by a single-use ticket. */
  watchJob: (jobId: string, onMessage: (message: LiveMessage) => void) => Promise<LiveConnection>;
};

/** A websocket message: `snapshot` first, then `status`, `stage`, `metrics`, `progress`, `checkpoint`, `log`, `cost`. */
export interface LiveMessage {
  kind: "snapshot" | "status" | "stage" | "metrics" | "progress" | "checkpoint" | "log" | "cost" | string;
  [key: string]: unknown;
}

export interface LiveConnection {
  close: () => void;
  socket: WebSocket;
}

function authMiddleware(token: BrightRunOptions["token"]): Middleware {
  return {
    onRequest({ request }) {
      const value = typeof token === "function" ? token() : token;
      if (value) request.headers.set("Authorization", `Token ${value}`);
      return request;
    },
  };
}

/** Paths whose GET answers a page ({count, next, previous, results}). */
type PagedPath = {
  [P in keyof paths]: paths[P] extends { get: { responses: { 200: { content: { "application/json": infer R } } } } }
    ? R extends { results: unknown[]; next?: string | null } ? P : never
    : never;
}[keyof paths];

type RowOf<P extends PagedPath> = paths[P] extends {
  get: { responses: { 200: { content: { "application/json": { results: (infer T)[] } } } } };
} ? T : never;

type QueryOf<P extends PagedPath> = paths[P] extends { get: { parameters: { query?: infer Q } } } ? Q : never;

async function allRows<P extends PagedPath>(
  this: BrightRunClient,
  path: P,
  init: { query?: QueryOf<P>; path?: Record<string, string> } = {},
): Promise<RowOf<P>[]> {
  const rows: RowOf<P>[] = [];
  let page = 1;
  for (;;) {
    const query = { ...(init.query ?? {}), page } as QueryOf<P>;
    // The generic path parameter keeps openapi-fetch from narrowing; the row type is checked above.
    const { data, error, response } = await (this.GET as (p: string, o: object) => Promise<{
      data?: { results: RowOf<P>[]; next?: string | null };
      error?: { error: ErrorBody };
      response: Response;
    }>)(path, { params: { query, path: init.path } });
    if (error || !data) throw new ApiError(response.status, error?.error);
    rows.push(...data.results);
    if (!data.next) return rows;
    page += 1;
  }
}

/**
 * The client. Errors are thrown as `ApiError` (a 4xx/5xx never comes back as `data`), so
 * `const { data } = await api.GET(...)` is always the documented success shape.
 */
export function createBrightRunClient(options: BrightRunOptions): BrightRunClient {
  const client = createClient<paths>({ baseUrl: options.baseUrl, fetch: options.fetch, credentials: "include" });
  client.use(authMiddleware(options.token));
  client.use({
    async onResponse({ response }) {
      if (response.ok) return response;
      let body: { error?: ErrorBody } | undefined;
      try {
        body = (await response.clone().json()) as { error?: ErrorBody };
      } catch {
        body = undefined;
      }
      throw new ApiError(response.status, body?.error);
    },
  });
  const api = client as BrightRunClient;
  api.all = allRows;
  api.watchJob = async (jobId, onMessage) => {
    const { data } = await api.POST("/api/v1/ws-tickets/");
    if (!data) throw new ApiError(500, undefined);
    const base = options.baseUrl || (typeof location !== "undefined" ? location.origin : "");
    const wsBase = base.replace(/^http/, "ws");
    const socket = new WebSocket(`${wsBase}/ws/jobs/${encodeURIComponent(jobId)}/?ticket=${encodeURIComponent(data.ticket)}`);
    socket.onmessage = (event: MessageEvent) => onMessage(JSON.parse(String(event.data)) as LiveMessage);
    return { socket, close: () => socket.close() };
  };
  return api;
}
