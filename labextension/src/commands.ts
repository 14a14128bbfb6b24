/**
 * Commands that drive a search from outside the kernel's cells: they run a
 * `%nimm` line magic silently in the current notebook's kernel and show what
 * it printed as a notification.
 */
import { Notification } from '@jupyterlab/apputils';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { KernelMessage } from '@jupyterlab/services';

import { watchAcks } from './comm';
import type { IAckMessage } from './protocol';

export const CommandIDs = {
  exportBest: 'nimm-jupyter:export-best',
  stop: 'nimm-jupyter:stop-search'
} as const;

export const COMMAND_LABELS: Record<string, string> = {
  [CommandIDs.exportBest]: 'Nimm: Export best model of last search',
  [CommandIDs.stop]: 'Nimm: Stop running search'
};

export const MAGIC_OF: Record<string, string> = {
  [CommandIDs.exportBest]: '%nimm export best',
  [CommandIDs.stop]: '%nimm stop'
};

/** What a silent execution printed, and its `set_next_input` payload if any. */
interface IOutcome {
  ok: boolean;
  text: string;
  nextInput: string | null;
}

/** Run `code` silently in `panel`'s kernel and gather its output. */
export async function runSilently(panel: NotebookPanel, code: string): Promise<IOutcome> {
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    return { ok: false, text: 'this notebook has no kernel', nextInput: null };
  }
  let stdout = '';
  let stderr = '';
  const future = kernel.requestExecute({ code, silent: true, store_history: false, allow_stdin: false });
  future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
    const type = msg.header.msg_type;
    if (type === 'stream') {
      const content = (msg as KernelMessage.IStreamMsg).content;
      if (content.name === 'stderr') {
        stderr += content.text;
      } else {
        stdout += content.text;
      }
    } else if (type === 'error') {
      const content = (msg as KernelMessage.IErrorMsg).content;
      stderr += `${content.ename}: ${content.evalue}\n`;
    }
  };
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  const content = reply.content;
  let nextInput: string | null = null;
  if (content.status === 'ok') {
    for (const payload of content.payload ?? []) {
      if (payload.source === 'set_next_input' && typeof payload.text === 'string') {
        nextInput = payload.text;
      }
    }
  } else if (content.status === 'error' && !stderr) {
    stderr = `${content.ename}: ${content.evalue}`;
  }
  if (/UsageError: Line magic function `%nimm` not found/.test(stderr)) {
    stderr = 'nimm is not loaded in this kernel: run `%load_ext nimm_jupyter` first';
  }
  const ok = content.status === 'ok' && !stderr.trim();
  return { ok, text: (ok ? stdout : stderr || stdout).trim(), nextInput };
}

/** Put `source` in a new code cell below the active cell (the kernel's fallback export). */
function insertBelowActive(panel: NotebookPanel, source: string): void {
  const model = panel.content.model;
  if (!model) {
    return;
  }
  const at = Math.max(0, panel.content.activeCellIndex) + 1;
  model.sharedModel.insertCell(at, { cell_type: 'code', source, metadata: {} });
}

/**
 * What the insertions acknowledged during a command did. The kernel reads these acks only
 * after the command's execution ends, so this page's own record is the one to report.
 */
function describeAcks(acks: IAckMessage[]): IOutcome {
  const failed = acks.filter(ack => ack.error !== undefined || ack.inserted === 0);
  if (failed.length > 0) {
    const why = failed.map(ack => ack.error ?? 'nothing was inserted').join('; ');
    return { ok: false, text: `the cells were not inserted: ${why}`, nextInput: null };
  }
  const inserted = acks.reduce((sum, ack) => sum + ack.inserted, 0);
  return { ok: true, text: `inserted ${inserted} cells below the search cell`, nextInput: null };
}

/** Execute one of the `%nimm` commands in `panel`'s kernel. */
export async function executeNimmCommand(panel: NotebookPanel, id: string): Promise<boolean> {
  const label = COMMAND_LABELS[id].replace(/^Nimm: /, '');
  const kernel = panel.sessionContext.session?.kernel;
  const acks: IAckMessage[] = [];
  const stopWatching = watchAcks((from, ack) => {
    if (from === kernel) {
      acks.push(ack);
    }
  });
  let outcome: IOutcome;
  try {
    outcome = await runSilently(panel, MAGIC_OF[id]);
  } catch (err) {
    Notification.error(`${label}: ${String(err)}`, { autoClose: 8000 });
    return false;
  } finally {
    stopWatching();
  }
  if (outcome.nextInput !== null) {
    insertBelowActive(panel, outcome.nextInput);
  }
  if (outcome.ok && acks.length > 0) {
    outcome = describeAcks(acks);
  }
  const text = outcome.text || (outcome.ok ? 'done' : 'failed');
  if (outcome.ok) {
    Notification.success(`${label}: ${text}`, { autoClose: 5000 });
  } else {
    Notification.error(`${label}: ${text}`, { autoClose: 8000 });
  }
  return outcome.ok;
}

/** The notebook a command applies to (the current one), if it has a kernel. */
export function targetPanel(tracker: INotebookTracker): NotebookPanel | null {
  const panel = tracker.currentWidget;
  return panel && panel.sessionContext.session?.kernel ? panel : null;
}
