// Folding in the merged view: a line that several ranks print identically at about the same time
// (within FOLD_MS of the first, before another line repeats too far away) shows once, as
// "× N ranks", and opens to show each rank's copy.

const FOLD_MS = 3000;
const FOLD_SPAN = 2048; // positions a copy may lie after the first

export class Folds {
  constructor() {
    this.hiddenBy = new Map(); // position -> position of the row it folds into
    this.members = new Map(); // position of a folded row -> [{position, task}] (itself first)
    this.open = new Set(); // folded rows shown opened
    this.version = 0;
  }

  /** Recompute from the loaded rows (`rows`: Map position -> {task, text, time}). */
  compute(rows) {
    this.hiddenBy.clear();
    this.members.clear();
    const positions = [...rows.keys()].sort((a, b) => a - b);
    let recent = new Map(); // text -> {position, time, tasks}
    let previous = -2;
    for (const position of positions) {
      if (position !== previous + 1) recent = new Map(); // a gap in what is loaded: start afresh
      previous = position;
      const row = rows.get(position);
      const text = row.text;
      if (!text.trim()) continue;
      const first = recent.get(text);
      if (first && row.time - first.time <= FOLD_MS && position - first.position <= FOLD_SPAN
          && !first.tasks.has(row.task)) {
        first.tasks.add(row.task);
        this.hiddenBy.set(position, first.position);
        this.members.get(first.position).push({ position, task: row.task });
        continue;
      }
      recent.set(text, { position, time: row.time, tasks: new Set([row.task]) });
      this.members.set(position, [{ position, task: row.task }]);
      if (recent.size > 4096) recent = new Map([...recent].slice(-2048));
    }
    for (const [position, members] of this.members) if (members.length < 2) this.members.delete(position);
    this.version += 1;
  }

  isHidden(position) {
    const by = this.hiddenBy.get(position);
    return by !== undefined && !this.open.has(by);
  }

  /** The ranks folded into the row at `position` (null when it folds nothing). */
  ranksOf(position) {
    return this.members.get(position) || null;
  }

  toggle(position) {
    if (this.open.has(position)) this.open.delete(position);
    else this.open.add(position);
    this.version += 1;
  }
}
