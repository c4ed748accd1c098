// Following jobs' progress on a progress-sync server: server-sent events first (EventSource),
// polling GET /api/jobs/{jobId} as the fallback. A plain ES module: no dependencies, no build.
//
// A JobFollower is in one of these transports:
//   "connecting"   opening the job's stream, no event yet;
//   "sse"          live: events arrive on the stream;
//   "reconnecting" the stream dropped and the browser is reconnecting by itself;
//   "polling"      GET /api/jobs/{jobId} every pollIntervalMs (backing off, up to 30 s, while
//                  the server cannot be reached);
//   "ended"        the job reached a terminal state (or the server does not know it): the
//                  stream is closed, no timer is left and no request is made any more.
// It polls when the stream stays silent for sseTimeoutMs (no event, whatever the reason), when
// the EventSource gives up (a status other than 200, or a body that is not text/event-stream:
// the browser then "fails the connection" and never retries; WHATWG HTML, section 9.2
// "Server-sent events"), when the stream reports `job-error`, or when every stream slot is taken.
// While polling it tries the stream again every sseRetryMs (and as soon as a slot frees) and goes
// back to "sse" on the first event of the new stream.
//
// Switching to the multi-job stream (GET /api/progress/stream?jobIds=a,b,c; issue 3) is a change
// of StreamHub only: write a class with the same subscribe(jobId, handlers) / unwait(handlers)
// interface that keeps ONE EventSource for all subscribed ids, reopens it (debounced, with the
// new jobIds) when a job is added or ends, routes each event to its handlers by `data.jobId`, and
// calls every handler's onGiveUp() when that EventSource fails; its maxStreams becomes the
// server's maximum of jobIds per stream. JobFollower and the page do not change.

export const TERMINAL_STATUSES = new Set(["completed", "failed", "cancelled"]);

/** The events whose data is a job snapshot (the server's EVENT_FOR_STATUS). */
export const SNAPSHOT_EVENTS = ["job-progress", "job-completed", "job-failed", "job-cancelled"];

/** Ends a stream whose job was not registered in time; data `{jobId, error, detail}`. */
export const JOB_ERROR_EVENT = "job-error";

export const DEFAULTS = Object.freeze({
  /** No event on a stream for this long (milliseconds): poll instead. */
  sseTimeoutMs: 30000,
  /** Milliseconds between two polls. */
  pollIntervalMs: 1000,
  /** While polling, try the stream again this often (milliseconds). */
  sseRetryMs: 10000,
  /** EventSources open at once. Browsers allow 6 HTTP/1.1 connections per origin, so this
   * leaves room for polls and for starting and cancelling jobs; the other jobs are polled. */
  maxStreams: 4,
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

export function streamUrl(jobId) {
  return `${jobUrl(jobId)}/progress/stream`;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** One EventSource per job, at most `maxStreams` at once. */
export class PerJobStreams {
  #maxStreams;
  #open = new Set();
  #waiting = new Set();

  constructor({ maxStreams = DEFAULTS.maxStreams } = {}) {
    this.#maxStreams = maxStreams;
  }

  /** Streams open now. */
  get openCount() {
    return this.#open.size;
  }

  /**
   * Open the stream of `jobId`.
   *
   * `handlers`: onSnapshot(snapshot), onJobError(data), onReconnecting(), onGiveUp() (the
   * EventSource failed for good; the subscription is already closed), onRoom() (called once,
   * after subscribe returned null, when a slot frees).
   *
   * Returns a subscription `{close()}`, or null when every slot is taken.
   */
  subscribe(jobId, handlers) {
    if (this.#open.size >= this.#maxStreams) {
      this.#waiting.add(handlers);
      return null;
    }
    const source = new EventSource(streamUrl(jobId));
    let closed = false;
    const subscription = {
      close: () => {
        if (closed) return;
        closed = true;
        source.close();
        this.#open.delete(subscription);
        this.#wakeOne();
      },
    };
    this.#open.add(subscription);
    for (const name of SNAPSHOT_EVENTS) {
      source.addEventListener(name, (event) => {
        const snapshot = parseJson(event.data);
        if (!closed && snapshot !== null) handlers.onSnapshot(snapshot);
      });
    }
    source.addEventListener(JOB_ERROR_EVENT, (event) => {
      if (!closed) handlers.onJobError(parseJson(event.data) ?? {});
    });
    source.addEventListener("error", () => {
      if (closed) return;
      if (source.readyState === EventSource.CLOSED) {
        subscription.close();
        handlers.onGiveUp();
      } else {
        handlers.onReconnecting();
      }
    });
    return subscription;
  }

  /** Forget handlers that wait for a slot. */
  unwait(handlers) {
    this.#waiting.delete(handlers);
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
  #transport = null;
  #via = null;
  #ended = false;

  /**
   * @param {string} jobId
   * @param {object} init
   * @param {PerJobStreams} init.streams where streams come from
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
      onReconnecting: () => {
        if (this.#transport === "sse") this.#setTransport("reconnecting", "the stream dropped");
      },
      onGiveUp: () => {
        this.#subscription = null;
        this.#leaveSse("the server refused the stream");
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

  /** Stop following: close the stream, clear the timers, abort a poll in flight. */
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
      // "no-cache": revalidate each time, so an ETag from the server turns polls into 304s.
      const response = await fetch(jobUrl(this.#jobId), {
        cache: "no-cache",
        headers: { Accept: "application/json" },
        signal: abort.signal,
      });
      if (response.status === 404) {
        gone = true;
      } else if (response.ok) {
        this.#accept(await response.json(), "polling");
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
    if (transport === this.#transport && transport !== "polling") return;
    this.#transport = transport;
    this.#callbacks.onTransport(transport, detail);
  }
}
