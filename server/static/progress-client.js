// Following jobs' progress on a progress-sync server: server-sent events first (EventSource),
// polling GET /api/jobs/{jobId} as the fallback. A plain ES module: no dependencies, no build.
//
// MultiJobStreams keeps ONE EventSource on the multi-job stream (GET /api/progress/stream?jobIds=
// a,b,c) for all the jobs it follows, routes each event to its job by `data.jobId`, and reopens
// the stream (debounced: one reopen for the changes of REOPEN_DEBOUNCE_MS) when a job is added or
// ends, so an ended job is no longer in any stream's jobIds. A reopened stream passes, in
// `lastEventId`, the seq it has of each job (the multi-job event id, `5,0,12`): the server sends
// only what changed since. More jobs than the server allows per stream (its --max-stream-jobs,
// given to the page in a <meta>) are split over several streams, at most maxStreams of them;
// jobs beyond that wait for room and are polled meanwhile.
//
// A JobFollower is in one of these transports:
//   "connecting"   its job is on a stream that has not brought an event of it yet;
//   "sse"          live: its events arrive on the stream;
//   "reconnecting" the stream dropped (or the server said `reconnect`: it is shutting down) and
//                  the browser is reconnecting by itself, resuming with Last-Event-ID;
//   "polling"      GET /api/jobs/{jobId} every pollIntervalMs with If-None-Match (an unchanged
//                  job answers 304 with no body), backing off up to 30 s while the server cannot
//                  be reached;
//   "ended"        the job reached a terminal state (or the server does not know it): it is off
//                  every stream, no timer is left and no request is made any more.
// It polls when no event of its job arrived for sseTimeoutMs (whatever the reason), when the
// EventSource gives up (a status other than 200, such as 503 for a refused stream or 204 when the
// server has nothing left to send, or a body that is not text/event-stream: the browser then
// "fails the connection" and never retries; WHATWG HTML, section 9.2 "Server-sent events"), when
// the stream reports `job-error` for its job, or when every stream slot is taken. While polling
// it tries the stream again every sseRetryMs (and as soon as a slot frees) and goes back to "sse"
// on the first event of its job.

export const TERMINAL_STATUSES = new Set(["completed", "failed", "cancelled"]);

/** The events whose data is a job snapshot (the server's EVENT_FOR_STATUS). */
export const SNAPSHOT_EVENTS = ["job-progress", "job-completed", "job-failed", "job-cancelled"];

/** Tells that a job is not registered; data `{jobId, error, detail}`. */
export const JOB_ERROR_EVENT = "job-error";

/** The server is shutting down: the browser reconnects after the `retry:` it sent with it.
 * Data `{reason, jobIds, retryMs}`. */
export const RECONNECT_EVENT = "reconnect";

/** The server's default most jobIds per stream (--max-stream-jobs), for a page that was not
 * told its server's. */
export const DEFAULT_MAX_STREAM_JOBS = 100;

/** Changes to the set of followed jobs within this many milliseconds make one reopen. */
export const REOPEN_DEBOUNCE_MS = 100;

export const DEFAULTS = Object.freeze({
  /** No event on a stream for this long (milliseconds): poll instead. */
  sseTimeoutMs: 30000,
  /** Milliseconds between two polls. */
  pollIntervalMs: 1000,
  /** While polling, try the stream again this often (milliseconds). */
  sseRetryMs: 10000,
  /** Multi-job streams (EventSources) open at once, each with up to the server's most jobIds
   * per stream. Browsers allow 6 HTTP/1.1 connections per origin, so this leaves room for polls
   * and for starting and cancelling jobs; jobs beyond what the streams carry are polled. */
  maxStreams: 4,
  /** A stream that carries more than one job asks the server for at most one event per job
   * per this many milliseconds (the streams' `minIntervalMs`; always the latest state, and
   * terminal events never wait). 0 asks for every change. */
  manyJobsMinIntervalMs: 500,
});

/** Longest wait between two polls while the server cannot be reached (milliseconds). */
export const MAX_POLL_BACKOFF_MS = 30000;

/** Read the options from a page's query string (`?sseTimeoutMs=300&pollIntervalMs=200`). Values
 * that are not whole numbers >= 1 are ignored (the default stays). */
export function readOptions(searchParams) {
  const options = { ...DEFAULTS };
  for (const name of Object.keys(DEFAULTS)) {
    const raw = searchParams.get(name);
    if (raw === null) continue;
    const value = Number(raw);
    if (Number.isInteger(value) && value >= 1) options[name] = value;
  }
  return Object.freeze(options);
}

export function jobUrl(jobId) {
  return `/api/jobs/${encodeURIComponent(jobId)}`;
}

/** The multi-job stream of `jobIds`; `seqs` (in the same order) are what the client has of
 * each job, sent as `lastEventId` so that the server skips what the client has. */
export function multiStreamUrl(jobIds, seqs = [], minIntervalMs = 0) {
  const ids = jobIds.map(encodeURIComponent).join(",");
  const resume = seqs.some((seq) => seq > 0) ? `&lastEventId=${seqs.join(",")}` : "";
  const pace = jobIds.length > 1 && minIntervalMs > 0 ? `&minIntervalMs=${minIntervalMs}` : "";
  return `/api/progress/stream?jobIds=${ids}${resume}${pace}`;
}

/** Read the server's most jobIds per stream from the page's
 * `<meta name="progress-sync-max-stream-jobs">`; DEFAULT_MAX_STREAM_JOBS when absent. */
export function readMaxStreamJobs(doc) {
  const raw = doc.querySelector('meta[name="progress-sync-max-stream-jobs"]')?.content;
  const value = Number(raw);
  return Number.isInteger(value) && value >= 1 ? value : DEFAULT_MAX_STREAM_JOBS;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** One EventSource for many jobs (the multi-job stream), split over several when needed. */
export class MultiJobStreams {
  #maxStreams;
  #minIntervalMs;
  #maxJobsPerStream;
  #debounceMs;
  /** jobId -> {jobId, handlers, seq (the latest the stream brought, 0: none), group} */
  #entries = new Map();
  /** Open streams: {source: EventSource, jobIds: string[], goodbye: why the server said
   * `reconnect`, or null} */
  #groups = new Set();
  #waiting = new Set();
  #timer = null;

  /**
   * @param {object} init
   * @param {number} init.maxStreams EventSources open at once
   * @param {number} init.maxJobsPerStream the server's most jobIds per stream
   * @param {number} init.debounceMs changes to the set of jobs gathered into one reopen
   * @param {number} init.minIntervalMs `minIntervalMs` of streams that carry several jobs
   */
  constructor({
    maxStreams = DEFAULTS.maxStreams,
    maxJobsPerStream = DEFAULT_MAX_STREAM_JOBS,
    debounceMs = REOPEN_DEBOUNCE_MS,
    minIntervalMs = DEFAULTS.manyJobsMinIntervalMs,
  } = {}) {
    this.#minIntervalMs = minIntervalMs;
    this.#maxStreams = maxStreams;
    this.#maxJobsPerStream = maxJobsPerStream;
    this.#debounceMs = debounceMs;
  }

  /** EventSources open now. */
  get openCount() {
    return [...this.#groups].filter((group) => group.source !== null).length;
  }

  /** Jobs that can be followed over streams at once. */
  get capacity() {
    return this.#maxStreams * this.#maxJobsPerStream;
  }

  /**
   * Follow `jobId` over a stream (one subscription per job at a time).
   *
   * `handlers`: onSnapshot(snapshot), onJobError(data), onReconnecting(why), onOpen() (a
   * stream carrying the job (re)connected), onGiveUp() (the EventSource failed for good; the
   * subscription is already closed), onRoom() (called once, after subscribe returned null,
   * when a slot frees).
   *
   * Returns a subscription `{close()}`, or null when every slot is taken.
   */
  subscribe(jobId, handlers) {
    if (this.#entries.has(jobId)) throw new Error(`job ${jobId} is already subscribed`);
    if (this.#entries.size >= this.capacity) {
      this.#waiting.add(handlers);
      return null;
    }
    const entry = { jobId, handlers, seq: 0, group: null };
    this.#entries.set(jobId, entry);
    this.#scheduleReopen();
    return { close: () => this.#remove(entry) };
  }

  /** Forget handlers that wait for a slot. */
  unwait(handlers) {
    this.#waiting.delete(handlers);
  }

  #remove(entry) {
    if (this.#entries.get(entry.jobId) !== entry) return;
    this.#entries.delete(entry.jobId);
    this.#scheduleReopen();
    this.#wakeOne();
  }

  #scheduleReopen() {
    if (this.#timer === null) this.#timer = setTimeout(() => this.#reopen(), this.#debounceMs);
  }

  /** Bring the streams in line with the jobs followed: only streams whose jobs changed reopen. */
  #reopen() {
    this.#timer = null;
    const changed = new Set();
    for (const group of this.#groups) {
      const kept = group.jobIds.filter((jobId) => this.#entries.get(jobId)?.group === group);
      if (kept.length !== group.jobIds.length) {
        group.jobIds = kept;
        changed.add(group);
      }
    }
    for (const entry of this.#entries.values()) {
      if (entry.group !== null) continue;
      // Fill the streams there are before opening another: one stream while the jobs fit.
      let group = [...this.#groups].find((g) => g.jobIds.length < this.#maxJobsPerStream);
      if (group === undefined) {
        group = { source: null, jobIds: [], goodbye: null };
        this.#groups.add(group);
      }
      group.jobIds.push(entry.jobId);
      entry.group = group;
      changed.add(group);
    }
    for (const group of changed) this.#open(group);
  }

  #members(group) {
    return group.jobIds
      .map((jobId) => this.#entries.get(jobId))
      .filter((entry) => entry?.group === group);
  }

  #open(group) {
    group.source?.close();
    group.source = null;
    if (group.jobIds.length === 0) {
      this.#groups.delete(group);
      return;
    }
    const seqs = group.jobIds.map((jobId) => this.#entries.get(jobId).seq);
    const source = new EventSource(multiStreamUrl(group.jobIds, seqs, this.#minIntervalMs));
    group.source = source;
    group.goodbye = null;
    const current = () => group.source === source;
    const entryFor = (data) => {
      const entry = current() ? this.#entries.get(data?.jobId) : undefined;
      return entry?.group === group ? entry : null;
    };
    for (const name of SNAPSHOT_EVENTS) {
      source.addEventListener(name, (event) => {
        const snapshot = parseJson(event.data);
        const entry = entryFor(snapshot);
        if (entry === null) return;
        if (typeof snapshot.seq === "number") entry.seq = snapshot.seq;
        entry.handlers.onSnapshot(snapshot);
      });
    }
    source.addEventListener(JOB_ERROR_EVENT, (event) => {
      const data = parseJson(event.data) ?? {};
      entryFor(data)?.handlers.onJobError(data);
    });
    source.addEventListener(RECONNECT_EVENT, (event) => {
      if (!current()) return;
      // The server is shutting down; it set `retry:` so that clients come back spread out.
      const retryMs = Number(parseJson(event.data)?.retryMs);
      const when = Number.isFinite(retryMs) ? ` in ${Math.round(retryMs / 100) / 10} s` : "";
      group.goodbye = `the server is shutting down; reconnecting${when}`;
      for (const entry of this.#members(group)) entry.handlers.onReconnecting(group.goodbye);
    });
    source.addEventListener("open", () => {
      if (!current()) return;
      group.goodbye = null;
      for (const entry of this.#members(group)) entry.handlers.onOpen();
    });
    source.addEventListener("error", () => {
      if (!current()) return;
      const members = this.#members(group);
      if (source.readyState !== EventSource.CLOSED) {
        const why = group.goodbye ?? "the stream dropped";
        for (const entry of members) entry.handlers.onReconnecting(why);
        return;
      }
      // Failed for good (503, 204, 400, ...): its jobs are polled and try a stream again later.
      group.source = null;
      this.#groups.delete(group);
      for (const entry of members) this.#entries.delete(entry.jobId);
      for (const entry of members) entry.handlers.onGiveUp();
      for (let i = 0; i < members.length; i += 1) this.#wakeOne();
    });
  }

  #wakeOne() {
    for (const handlers of this.#waiting) {
      this.#waiting.delete(handlers);
      handlers.onRoom();
      return;
    }
  }
}

/** Follows one job until its terminal state; see the top of this module. */
export class JobFollower {
  #jobId;
  #streams;
  #options;
  #callbacks;
  #handlers;
  #subscription = null;
  #watchdog = null;
  #polling = false;
  #pollTimer = null;
  #pollAbort = null;
  #pollFailures = 0;
  #sseTriedAt = -Infinity;
  #lastSeq = -1;
  #etag = null;
  #transport = null;
  #transportDetail = null;
  #via = null;
  #ended = false;

  /**
   * @param {string} jobId
   * @param {object} init
   * @param {MultiJobStreams} init.streams where streams come from
   * @param {object} init.options see DEFAULTS
   * @param {(snapshot: object, via: string) => void} init.onSnapshot every newer snapshot
   * @param {(transport: string, detail: string) => void} init.onTransport transport changes
   * @param {() => void} init.onGone the server does not know the job (404); following ended
   */
  constructor(jobId, { streams, options, onSnapshot, onTransport, onGone }) {
    this.#jobId = jobId;
    this.#streams = streams;
    this.#options = { ...DEFAULTS, ...options };
    this.#callbacks = { onSnapshot, onTransport, onGone };
    this.#handlers = {
      onSnapshot: (snapshot) => this.#onStreamSnapshot(snapshot),
      onJobError: () => this.#leaveSse("the stream did not find the job"),
      onReconnecting: (why) => {
        if (this.#transport === "sse" || this.#transport === "reconnecting") {
          this.#setTransport("reconnecting", why);
        }
      },
      onOpen: () => {
        // Reconnected: the stream resumes from Last-Event-ID, so the job is live again.
        if (this.#transport === "reconnecting") this.#setTransport("sse", "");
      },
      onGiveUp: () => {
        this.#subscription = null;
        this.#leaveSse("the server refused the stream, or ended it for good");
      },
      onRoom: () => {
        if (!this.#ended && this.#subscription === null) this.#trySse();
      },
    };
  }

  get transport() {
    return this.#transport;
  }

  /** The transport that brought the latest snapshot: "sse", "polling" or "request". */
  get via() {
    return this.#via;
  }

  get ended() {
    return this.#ended;
  }

  start() {
    this.#trySse();
  }

  /** A snapshot got otherwise (the answer to a cancel request, say). */
  deliver(snapshot) {
    this.#accept(snapshot, "request");
  }

  /** Stop following: leave the stream, clear the timers, abort a poll in flight. */
  stop() {
    this.#ended = true;
    this.#closeSse();
    this.#stopPolling();
    this.#setTransport("ended", "");
  }

  #trySse() {
    if (this.#ended || this.#subscription !== null) return;
    this.#sseTriedAt = performance.now();
    const subscription = this.#streams.subscribe(this.#jobId, this.#handlers);
    if (subscription === null) {
      if (!this.#polling) this.#startPolling("every stream slot is taken");
      return;
    }
    this.#subscription = subscription;
    if (!this.#polling) this.#setTransport("connecting", "");
    this.#armWatchdog();
  }

  #onStreamSnapshot(snapshot) {
    if (this.#ended) return;
    this.#armWatchdog();
    if (this.#transport !== "sse") {
      this.#stopPolling();
      this.#setTransport("sse", "");
    }
    this.#accept(snapshot, "sse");
  }

  #armWatchdog() {
    clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => {
      this.#watchdog = null;
      const seconds = this.#options.sseTimeoutMs / 1000;
      this.#leaveSse(`no event for ${seconds} s`);
    }, this.#options.sseTimeoutMs);
  }

  #leaveSse(reason) {
    this.#closeSse();
    if (!this.#ended && !this.#polling) this.#startPolling(reason);
  }

  #closeSse() {
    clearTimeout(this.#watchdog);
    this.#watchdog = null;
    this.#streams.unwait(this.#handlers);
    const subscription = this.#subscription;
    this.#subscription = null;
    subscription?.close();
  }

  #startPolling(reason) {
    this.#polling = true;
    this.#setTransport("polling", reason);
    this.#poll();
  }

  #stopPolling() {
    this.#polling = false;
    clearTimeout(this.#pollTimer);
    this.#pollTimer = null;
    this.#pollAbort?.abort();
    this.#pollAbort = null;
  }

  async #poll() {
    this.#pollTimer = null;
    const abort = new AbortController();
    this.#pollAbort = abort;
    let gone = false;
    let failed = false;
    try {
      // The ETag of the last answer goes back in If-None-Match: an unchanged job answers 304
      // with no body (RFC 9110, section 13.1.2). "no-store" keeps the browser's cache out of it,
      // so the 304 reaches this code as it is.
      const headers = { Accept: "application/json" };
      if (this.#etag !== null) headers["If-None-Match"] = this.#etag;
      const response = await fetch(jobUrl(this.#jobId), {
        cache: "no-store",
        headers,
        signal: abort.signal,
      });
      if (response.status === 404) {
        gone = true;
      } else if (response.status === 304) {
        // Unchanged since the last poll.
      } else if (response.ok) {
        const snapshot = await response.json();
        this.#etag = response.headers.get("ETag");
        this.#accept(snapshot, "polling");
      } else {
        failed = true;
      }
    } catch (error) {
      // A network error or an aborted poll: the next poll (if any) tries again, later each
      // time while the server cannot be reached.
      if (error?.name !== "AbortError") failed = true;
    } finally {
      if (this.#pollAbort === abort) this.#pollAbort = null;
    }
    if (abort.signal.aborted || this.#ended) return;
    if (gone) {
      this.stop();
      this.#callbacks.onGone();
      return;
    }
    if (!this.#polling) return;
    if (
      this.#subscription === null &&
      performance.now() - this.#sseTriedAt >= this.#options.sseRetryMs
    ) {
      this.#trySse();
    }
    this.#pollFailures = failed ? this.#pollFailures + 1 : 0;
    const delay = Math.min(
      this.#options.pollIntervalMs * 2 ** this.#pollFailures,
      Math.max(this.#options.pollIntervalMs, MAX_POLL_BACKOFF_MS),
    );
    this.#pollTimer = setTimeout(() => this.#poll(), delay);
  }

  #accept(snapshot, via) {
    if (this.#ended || snapshot?.jobId !== this.#jobId) return;
    // A poll answered after a newer stream event (or the other way round) is older: skip it.
    if (typeof snapshot.seq === "number") {
      if (snapshot.seq <= this.#lastSeq) return;
      this.#lastSeq = snapshot.seq;
    }
    if (via !== "request") this.#via = via;
    const terminal = TERMINAL_STATUSES.has(snapshot.status);
    if (terminal) this.stop();
    this.#callbacks.onSnapshot(snapshot, this.#via);
  }

  #setTransport(transport, detail) {
    if (transport === this.#transport && detail === this.#transportDetail) return;
    this.#transport = transport;
    this.#transportDetail = detail;
    this.#callbacks.onTransport(transport, detail);
  }
}
