// Live follow of a task log over its Server-Sent Events stream, read with fetch (EventSource
// cannot send the X-Auth-Token header). After a dropped connection it reconnects with the offset
// after the last event seen, so no byte is lost or repeated.
import { send } from './api.js';

const RETRY_MS = 1000;
const decoder = new TextDecoder();

function newlinesIn(event) {
  if (event.text !== undefined) {
    let n = 0;
    for (let i = event.text.indexOf('\n'); i >= 0; i = event.text.indexOf('\n', i + 1)) n += 1;
    return { newlines: n, first: event.text[0], last: event.text[event.text.length - 1] };
  }
  const raw = atob(event.base64);
  let n = 0;
  for (let i = 0; i < raw.length; i += 1) if (raw.charCodeAt(i) === 10) n += 1;
  return { newlines: n, first: raw[0], last: raw[raw.length - 1] };
}

/**
 * Follow `path` (…/logs/stream) from byte `offset`.
 *   onLog({offset, end, newlines, first, last})  new bytes [offset, end): how many newlines, first and last char
 *   onEnd(reason)                                the stream ended for good (task finished, job deleted…);
 *                                                a server shutting down is reconnected to, as a dropped connection
 *   onState(state)                               'live' | 'reconnecting'
 * Returns stop().
 */
export function follow(path, offset, { onLog, onEnd, onState }) {
  const controller = new AbortController();
  let position = offset;
  let stopped = false;

  async function once() {
    const response = await send('GET', path, { query: { offset: position }, signal: controller.signal });
    onState('live');
    const reader = response.body.getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let kind = 'message';
        const data = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith('event:')) kind = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
        if (!data.length) continue;
        const event = JSON.parse(data.join('\n'));
        if (kind === 'log') {
          position = event.end;
          onLog({ offset: event.offset, end: event.end, ...newlinesIn(event) });
        } else if (kind === 'end') {
          if (event.reason === 'server shutting down') return false; // another process will answer
          onEnd(event.reason);
          return true;
        }
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        if (await once()) return;
      } catch (error) {
        if (stopped) return;
        if (error.status && error.status < 500 && error.status !== 429) {
          onEnd(error.message);
          return;
        }
      }
      if (stopped) return;
      onState('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  })();

  return () => {
    stopped = true;
    controller.abort();
  };
}
