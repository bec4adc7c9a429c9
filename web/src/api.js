// The jobtail API from the browser. The token lives in this tab's sessionStorage and travels as
// X-Auth-Token; no cookie carries credentials (so no request can be forged from another site).

const KEY = 'jobtail.session';

export const ACTIONS = {
  getJob: 'modelarts:trainJob:get',
  listJobs: 'modelarts:trainJob:list',
  getLogs: 'modelarts:trainJob:getLogs',
  update: 'modelarts:trainJob:update',
  remove: 'modelarts:trainJob:delete',
  logExport: 'modelarts:trainJob:logExport',
};

export const session = load();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || {};
  } catch {
    return {};
  }
}

function save() {
  sessionStorage.setItem(KEY, JSON.stringify(session));
}

function forget() {
  for (const key of Object.keys(session)) delete session[key];
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};
/** What to do when the server no longer accepts the token (expired, revoked). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

async function failure(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  return new ApiError(response.status, body.error_code || String(response.status),
    body.error_msg || response.statusText || 'request failed');
}

export function url(path, query = {}) {
  const target = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') target.searchParams.set(key, String(value));
  }
  return target;
}

/** Send a request with the session's token; the JSON answer, or throws ApiError. */
export async function request(method, path, { query, body, headers = {}, signal } = {}) {
  const response = await send(method, path, { query, body, headers, signal });
  if (response.status === 204) return null;
  return response.json();
}

/** Like `request`, but returns the Response itself (for streams). */
export async function send(method, path, { query, body, headers = {}, signal } = {}) {
  const sent = { ...headers };
  if (session.token) sent['X-Auth-Token'] = session.token;
  let payload;
  if (body !== undefined) {
    sent['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), {
    method, headers: sent, body: payload, signal, cache: 'no-store', credentials: 'omit',
  });
  if (!response.ok) {
    const error = await failure(response);
    if (error.status === 401 && session.token) {
      forget();
      unauthorized(error);
    }
    throw error;
  }
  return response;
}

export async function signIn(name, password) {
  const response = await fetch('/v3/auth/tokens', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name, password } } } } }),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!response.ok) throw await failure(response);
  const answer = await response.json();
  session.token = response.headers.get('X-Subject-Token');
  session.user = answer.token.user.name;
  session.expiresAt = answer.token.expires_at;
  save();
  await loadProjects();
}

export async function loadProjects() {
  const answer = await request('GET', '/v3/auth/projects');
  session.projects = answer.projects;
  save();
  return session.projects;
}

/** End the token on the server and forget it here. */
export async function signOut() {
  try {
    if (session.token) await request('DELETE', '/v3/auth/tokens', { headers: { 'X-Subject-Token': session.token } });
  } finally {
    forget();
  }
}

export const signedIn = () => Boolean(session.token);

export function project(id) {
  return (session.projects || []).find((p) => p.id === id);
}

/** May the session do `action` in project `id`? (The server decides anyway; this hides buttons.) */
export function can(id, action) {
  const found = project(id);
  return Boolean(found && found.actions.includes(action));
}

export const jobPath = (projectId, jobId) => `/v2/${encodeURIComponent(projectId)}/training-jobs/${encodeURIComponent(jobId)}`;
