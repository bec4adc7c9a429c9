// Signing in (user name and password, the same POST /v3/auth/tokens as the API) and picking a project.
import { loadProjects, session, signIn, signedIn } from './api.js';
import { el } from './dom.js';

export function signInPage(root, { navigate, next }) {
  const name = el('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const password = el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const message = el('p', { class: 'error', hidden: true, role: 'alert' });
  const button = el('button', { type: 'submit' }, 'Sign in');
  const form = el('form', { class: 'signin' },
    el('h1', {}, 'jobtail'),
    el('label', {}, 'User name', name),
    el('label', {}, 'Password', password),
    message, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    message.hidden = true;
    try {
      await signIn(name.value.trim(), password.value);
      const projects = session.projects || [];
      navigate(next || (projects.length === 1 ? `/p/${encodeURIComponent(projects[0].id)}` : '/'), { replace: true });
    } catch (error) {
      message.textContent = error.status === 401 ? 'Wrong user name or password.' : error.message;
      message.hidden = false;
      button.disabled = false;
      password.select();
    }
  });
  root.replaceChildren(el('div', { class: 'center' }, form));
  name.focus();
}

export function projectsPage(root, { navigate }) {
  if (!signedIn()) {
    signInPage(root, { navigate });
    return;
  }
  const list = el('ul', { class: 'projects' });
  const box = el('div', { class: 'center' }, el('div', { class: 'picker' }, el('h1', {}, 'Projects'), list));
  root.replaceChildren(box);
  const show = (projects) => {
    if (!projects.length) {
      list.replaceChildren(el('li', { class: 'empty' }, 'You hold no role in any project yet. Ask an administrator to grant you one.'));
      return;
    }
    list.replaceChildren(...projects.map((p) => el('li', {},
      el('a', { href: `/p/${encodeURIComponent(p.id)}` }, el('span', { class: 'name' }, p.name),
        el('span', { class: 'role' }, p.role)))));
  };
  show(session.projects || []);
  loadProjects().then(show).catch(() => {});
}
