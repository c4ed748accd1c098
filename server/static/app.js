// The page: list the server's jobs, start demo jobs, cancel them, and show each job's progress
// live. Settings come from the page's URL (see progress-client.js, DEFAULTS), for example
// /?sseTimeoutMs=3000&pollIntervalMs=500; the server's most jobIds per stream from a <meta>.

import {
  JobFollower,
  MultiJobStreams,
  TERMINAL_STATUSES,
  jobUrl,
  readMaxStreamJobs,
  readOptions,
} from "./progress-client.js";

/** How many of the server's newest jobs the page shows when it loads. */
const LISTED_JOBS = 100;

const options = readOptions(new URLSearchParams(window.location.search));
const streams = new MultiJobStreams({
  maxStreams: options.maxStreams,
  maxJobsPerStream: readMaxStreamJobs(document),
  minIntervalMs: options.manyJobsMinIntervalMs,
});

const form = document.getElementById("start-form");
const formError = document.getElementById("form-error");
const startButton = document.getElementById("start");
const jobList = document.getElementById("jobs");
const noJobs = document.getElementById("no-jobs");
const clearFinished = document.getElementById("clear-finished");
const announcer = document.getElementById("announcer");
const template = document.getElementById("job-template");

const inputsByField = {
  "params.durationS": document.getElementById("duration"),
  "params.updatesPerS": document.getElementById("rate"),
  "params.failAtPercent": document.getElementById("fail-at"),
};

/** jobId -> view: {jobId, element, parts, follower, snapshot, label} */
const views = new Map();
let viewCount = 0;
let elapsedTimer = null;
/** The least (client clock - server clock) seen, in ms: corrects elapsed times for clock skew. */
let clockOffsetMs = null;

const TRANSPORT_TEXT = {
  connecting: "Connecting…",
  sse: "Live (SSE)",
  reconnecting: "Reconnecting…",
  polling: "Polling",
};

// ---- starting a job --------------------------------------------------------------------------

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (form.dataset.busy === "true") return;
  clearFormError();
  const invalid = [...form.elements].find((input) => input.willValidate && !input.checkValidity());
  if (invalid) {
    showFormError(`${labelOf(invalid)}: ${invalid.validationMessage}`, invalid);
    return;
  }
  const params = {
    durationS: Number(inputsByField["params.durationS"].value),
    updatesPerS: Number(inputsByField["params.updatesPerS"].value),
  };
  const failAt = inputsByField["params.failAtPercent"].value.trim();
  if (failAt !== "") params.failAtPercent = Number(failAt);

  form.dataset.busy = "true";
  startButton.setAttribute("aria-disabled", "true");
  try {
    const response = await fetch("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ kind: "demo", params }),
    });
    const body = await response.json().catch(() => null);
    if (response.status !== 201 || body === null) {
      const detail = body?.detail ?? `the server answered ${response.status}`;
      showFormError(`Could not start the job: ${detail}`, inputsByField[body?.field]);
      return;
    }
    const snapshot = { jobId: body.jobId, status: body.status, percent: 0, stage: "" };
    addJob(snapshot, describe(params));
    announce(`Job ${shortIdOf(body.jobId)} started`);
  } catch (error) {
    showFormError(`Could not reach the server: ${error.message}`);
  } finally {
    form.dataset.busy = "false";
    startButton.removeAttribute("aria-disabled");
  }
});

function labelOf(input) {
  return document.querySelector(`label[for="${input.id}"]`)?.firstChild.textContent.trim() ?? "";
}

function showFormError(message, input) {
  formError.textContent = message;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-errormessage", "form-error");
    input.focus();
  }
}

function clearFormError() {
  formError.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-errormessage");
  }
}

// ---- one job on the page ---------------------------------------------------------------------

function describe(params) {
  const parts = [`${params.durationS} s`, `${params.updatesPerS} updates/s`];
  if (params.failAtPercent !== undefined) parts.push(`fails at ${params.failAtPercent}%`);
  return parts.join(" · ");
}

function shortIdOf(jobId) {
  return jobId.length > 8 ? jobId.slice(0, 8) : jobId;
}

/** Show a job, and follow it until it ends unless `snapshot` is already its final state. */
function addJob(snapshot, details) {
  const { jobId } = snapshot;
  if (views.has(jobId)) return;
  viewCount += 1;
  const element = template.content.firstElementChild.cloneNode(true);
  const part = (role) => element.querySelector(`[data-role="${role}"]`);
  const shortId = shortIdOf(jobId);
  const titleId = `job-${viewCount}-title`;
  const title = element.querySelector(".job-title");
  title.id = titleId;
  title.textContent = `Job ${shortId}`;
  const detail = document.createElement("span");
  detail.className = "job-params";
  detail.textContent = details;
  title.append(" ", detail);
  element.dataset.jobId = jobId;
  const bar = element.querySelector('[role="progressbar"]');
  bar.setAttribute("aria-labelledby", titleId);
  part("job-id").textContent = `id ${jobId}`;
  const cancel = part("cancel");
  cancel.setAttribute("aria-label", `Cancel job ${shortId}`);

  const view = {
    jobId,
    element,
    label: `Job ${shortId}`,
    parts: {
      status: part("status"),
      transport: part("transport"),
      bar,
      fill: element.querySelector(".bar-fill"),
      percent: part("percent"),
      stage: part("stage"),
      elapsed: part("elapsed"),
      eta: part("eta"),
      message: part("message"),
      error: part("error"),
      cancel,
    },
    snapshot: { message: null, error: null, ...snapshot },
    follower: null,
  };
  cancel.addEventListener("click", () => cancelJob(view));
  views.set(jobId, view);
  jobList.prepend(element);
  render(view);
  if (TERMINAL_STATUSES.has(snapshot.status)) {
    // Ended before the page saw it: its final state, and nothing to follow.
    renderTransport(view, "ended", "");
    updateListState();
    return;
  }
  view.follower = new JobFollower(jobId, {
    streams,
    options,
    onSnapshot: (next) => onSnapshot(view, next),
    onTransport: (transport, why) => renderTransport(view, transport, why),
    onGone: () => onGone(view),
  });
  updateListState();
  view.follower.start();
  startElapsedTimer();
}

// ---- the jobs already on the server ----------------------------------------------------------

/** Show the server's newest jobs (started by another tab, by `progress-sync demo`, by a
 * producer) and follow those that have not ended. */
async function loadExistingJobs() {
  let body;
  try {
    const response = await fetch(`/api/jobs?limit=${LISTED_JOBS}`, {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return; // the list needs a token on this server: show what starts here
    body = await response.json();
  } catch (error) {
    announce(`Could not list the server's jobs: ${error.message}`);
    return;
  }
  const jobs = (body?.jobs ?? []).filter((job) => typeof job?.jobId === "string");
  // Newest first in the answer; each job is put at the top, so the oldest goes first.
  for (const job of jobs.reverse()) addJob(job, job.kind ? `${job.kind} job` : "external job");
  if (jobs.length > 0) announce(`${jobs.length} ${jobs.length === 1 ? "job" : "jobs"} on the server`);
}

function onSnapshot(view, snapshot) {
  const before = view.snapshot.status;
  const previous = view.snapshot;
  // The server's policy, kept here too (a poll and a stream may cross): percent never goes
  // down within an attempt; a lower percent is shown only with a higher `attempt` (a reset).
  if (
    Number(snapshot.percent) < Number(previous.percent) &&
    (snapshot.attempt ?? 1) <= (previous.attempt ?? 1) &&
    !TERMINAL_STATUSES.has(previous.status)
  ) {
    snapshot = { ...snapshot, percent: previous.percent };
  }
  if ((snapshot.attempt ?? 1) > (previous.attempt ?? 1) && previous.attempt !== undefined) {
    announce(`${view.label} started over (attempt ${snapshot.attempt})`);
  }
  view.snapshot = snapshot;
  const skew = Date.now() - Date.parse(snapshot.updatedAt);
  if (Number.isFinite(skew)) clockOffsetMs = clockOffsetMs === null ? skew : Math.min(clockOffsetMs, skew);
  render(view);
  if (snapshot.status !== before) {
    const why = snapshot.status === "failed" && snapshot.error ? `: ${snapshot.error}` : "";
    announce(`${view.label} ${snapshot.status}${why}`);
  }
  if (TERMINAL_STATUSES.has(snapshot.status)) updateListState();
}

function onGone(view) {
  view.snapshot = {
    ...view.snapshot,
    status: "unknown",
    error: "The server does not know this job (it may have restarted).",
  };
  render(view);
  renderTransport(view, "ended", "");
  announce(`${view.label}: the server does not know this job`);
  updateListState();
}

function isFinished(view) {
  return view.follower === null || view.follower.ended;
}

async function cancelJob(view) {
  const { cancel } = view.parts;
  if (isFinished(view) || cancel.getAttribute("aria-disabled") === "true") return;
  cancel.setAttribute("aria-disabled", "true");
  try {
    const response = await fetch(`${jobUrl(view.jobId)}/cancel`, {
      method: "POST",
      headers: { Accept: "application/json" },
    });
    if (response.status === 202) {
      view.follower.deliver(await response.json());
    }
    // 409: the job had already ended; its terminal state is on its way over the stream or poll.
  } catch (error) {
    announce(`Could not cancel ${view.label}: ${error.message}`);
  } finally {
    cancel.removeAttribute("aria-disabled");
  }
}

// ---- rendering -------------------------------------------------------------------------------

function formatPercent(percent) {
  const rounded = Math.round(percent * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded : rounded.toFixed(1)}%`;
}

/** "about 3 min left" from a snapshot's etaSeconds (null: nothing to say). */
function formatTimeLeft(etaSeconds) {
  if (typeof etaSeconds !== "number" || !Number.isFinite(etaSeconds) || etaSeconds < 0) {
    return null;
  }
  if (etaSeconds < 1) return "less than a second left";
  if (etaSeconds < 90) return `about ${Math.round(etaSeconds)} s left`;
  if (etaSeconds < 90 * 60) return `about ${Math.round(etaSeconds / 60)} min left`;
  return `about ${Math.round(etaSeconds / 3600)} h left`;
}

function renderTimeLeft(view) {
  const { snapshot, parts } = view;
  const left = snapshot.status === "running" ? formatTimeLeft(snapshot.etaSeconds) : null;
  parts.eta.textContent = left ?? "–";
  parts.eta.title =
    left !== null && typeof snapshot.rate === "number"
      ? `at ${snapshot.rate.toFixed(2)} % per second (smoothed)`
      : snapshot.status === "running"
        ? "not enough history yet, or the job is not advancing"
        : "";
}

function render(view) {
  const { snapshot, parts, element } = view;
  const percent = Math.min(100, Math.max(0, Number(snapshot.percent) || 0));
  const text = formatPercent(percent);
  element.dataset.status = snapshot.status;
  const attempt = snapshot.attempt ?? 1;
  parts.status.textContent = attempt > 1 ? `${snapshot.status} · attempt ${attempt}` : snapshot.status;
  parts.fill.style.width = `${percent}%`;
  parts.bar.setAttribute("aria-valuenow", String(Math.round(percent * 10) / 10));
  parts.bar.setAttribute("aria-valuetext", `${text}, ${snapshot.stage || snapshot.status}`);
  parts.percent.textContent = text;
  parts.stage.textContent = snapshot.stage || "–";
  parts.message.textContent = snapshot.message || "–";
  if (snapshot.error) {
    parts.error.textContent = snapshot.error;
    parts.error.hidden = false;
  } else {
    parts.error.hidden = true;
  }
  const finished = TERMINAL_STATUSES.has(snapshot.status) || snapshot.status === "unknown";
  if (finished && !parts.cancel.hidden) {
    // Keep keyboard focus in the job when its focused Cancel button goes away.
    const hadFocus = document.activeElement === parts.cancel;
    parts.cancel.hidden = true;
    if (hadFocus) element.focus();
  }
  renderElapsed(view);
  renderTimeLeft(view);
}

function renderTransport(view, transport, why) {
  const { element, parts } = view;
  element.dataset.transport = transport;
  if (transport === "ended") {
    const via = view.follower?.via;
    parts.transport.textContent =
      via === "polling" ? "Final · via polling" : via === "sse" ? "Final · via SSE" : "Final";
    parts.transport.title = "";
  } else {
    parts.transport.textContent = TRANSPORT_TEXT[transport] ?? transport;
    parts.transport.title = why ? `Why: ${why}` : "";
  }
}

function elapsedSeconds(snapshot, finished) {
  const created = Date.parse(snapshot.createdAt);
  if (!Number.isFinite(created)) return 0;
  if (finished) return (Date.parse(snapshot.updatedAt) - created) / 1000;
  return Math.max(0, Date.now() - (clockOffsetMs ?? 0) - created) / 1000;
}

function formatElapsed(seconds, finished) {
  if (seconds < 60) return finished ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.floor(seconds % 60);
  return `${minutes} min ${String(rest).padStart(2, "0")} s`;
}

function renderElapsed(view) {
  const finished = TERMINAL_STATUSES.has(view.snapshot.status);
  view.parts.elapsed.textContent = formatElapsed(elapsedSeconds(view.snapshot, finished), finished);
}

function startElapsedTimer() {
  if (elapsedTimer !== null) return;
  elapsedTimer = setInterval(() => {
    let running = 0;
    for (const view of views.values()) {
      if (isFinished(view)) continue;
      running += 1;
      renderElapsed(view);
    }
    if (running === 0) {
      clearInterval(elapsedTimer);
      elapsedTimer = null;
    }
  }, 1000);
}

function updateListState() {
  noJobs.hidden = views.size > 0;
  clearFinished.disabled = ![...views.values()].some(isFinished);
}

function announce(text) {
  announcer.textContent = text;
}

clearFinished.addEventListener("click", () => {
  for (const view of [...views.values()]) {
    if (!isFinished(view)) continue;
    view.element.remove();
    views.delete(view.jobId);
  }
  updateListState();
  form.querySelector("input").focus();
});

updateListState();
loadExistingJobs();
