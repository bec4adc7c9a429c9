// The viewer's shell: the header (project, user, sign out) and the routes.
//   /                                   sign in, or pick a project
//   /p/PROJECT                          jobs
//   /p/PROJECT/jobs/JOB                 a job
//   /p/PROJECT/jobs/JOB/logs/TASK       a task's log (#L123: that line)
//   /p/PROJECT/jobs/JOB/logs            every task's log merged (?tasks=worker-0,worker-2)
import { loadProjects, onUnauthorized, project, session, signOut, signedIn } from './api.js';
import { el } from './dom.js';
import { jobPage } from './job.js';
import { jobsPage } from './jobs.js';
import { logPage } from './logview.js';
import { projectsPage, signInPage } from './signin.js';

const app = document.getElementById('app');
const header = el('header', { class: 'top' });
const main = el('main', { id: 'page' });
app.replaceChildren(header, main);
let unmount = null;

const ROUTES = [
  [/^\/$/, (p) => projectsPage(main, p)],
  [/^\/p\/([^/]+)\/?$/, (p, [projectId]) => jobsPage(main, { ...p, projectId })],
  [/^\/p\/([^/]+)\/jobs\/([^/]+)\/?$/, (p, [projectId, jobId]) => jobPage(main, { ...p, projectId, jobId })],
  [/^\/p\/([^/]+)\/jobs\/([^/]+)\/logs\/?$/, (p, [projectId, jobId]) => logPage(main, { ...p, projectId, jobId, task: null })],
  [/^\/p\/([^/]+)\/jobs\/([^/]+)\/logs\/([^/]+)\/?$/, (p, [projectId, jobId, task]) => logPage(main, { ...p, projectId, jobId, task })],
];

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route();
}

function showHeader(projectId) {
  if (!signedIn()) {
    header.replaceChildren(el('a', { class: 'brand', href: '/' }, 'jobtail'));
    return;
  }
  const picker = el('select', { class: 'project-picker', 'aria-label': 'Project' },
    (session.projects || []).map((p) => el('option', { value: p.id, selected: p.id === projectId }, p.name)));
  if (!projectId) picker.prepend(el('option', { value: '', selected: true, disabled: true }, 'Choose a project'));
  picker.addEventListener('change', () => navigate(`/p/${encodeURIComponent(picker.value)}`));
  const out = el('button', { type: 'button', class: 'signout' }, 'Sign out');
  out.addEventListener('click', async () => {
    out.disabled = true;
    try {
      await signOut();
    } catch {
      /* the token is forgotten here whatever the server said */
    }
    navigate('/', { replace: true });
  });
  const role = projectId && project(projectId) ? el('span', { class: 'role' }, project(projectId).role) : null;
  header.replaceChildren(el('a', { class: 'brand', href: '/' }, 'jobtail'), picker, role,
    el('span', { class: 'spacer' }), el('span', { class: 'user' }, session.user || ''), out);
}

function route() {
  if (unmount) unmount();
  unmount = null;
  const path = location.pathname;
  for (const [pattern, page] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    const parts = match.slice(1).map(decodeURIComponent);
    if (!signedIn() && path !== '/') {
      showHeader(null);
      signInPage(main, { navigate, next: path + location.search + location.hash });
      return;
    }
    showHeader(parts[0] || null);
    unmount = page({ navigate }, parts) || null;
    return;
  }
  showHeader(null);
  main.replaceChildren(el('div', { class: 'center' }, el('p', {}, 'No such page. '), el('a', { href: '/' }, 'Start over')));
}

onUnauthorized(() => {
  showHeader(null);
  signInPage(main, { navigate, next: location.pathname + location.search + location.hash });
});

// Links inside the app change the page without reloading it.
document.addEventListener('click', (e) => {
  const link = e.target.closest('a[href]');
  if (!link || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (link.target || link.hasAttribute('download')) return;
  const target = new URL(link.href, location.href);
  if (target.origin !== location.origin || target.pathname.startsWith('/v') || target.pathname === location.pathname && target.hash) return;
  e.preventDefault();
  navigate(target.pathname + target.search + target.hash);
});
window.addEventListener('popstate', route);

route();
// Roles may have changed since signing in: look again, once the page has what it came for.
if (signedIn()) {
  setTimeout(() => loadProjects().then(() => showHeader(/^\/p\/([^/]+)/.exec(location.pathname)?.[1] ?? null))
    .catch(() => {}), 1500);
}
