/**
 * The frontend end of the `nimm_jupyter.cells` comm: registers the comm target
 * on the kernel of every notebook panel and inserts the cells the kernel sends.
 */
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { Kernel, KernelMessage } from '@jupyterlab/services';

import { applyInsertCells, findCellIndex } from './insert';
import { IAckMessage, PROTOCOL_VERSION, TARGET, ackFor, parseInsertCells } from './protocol';

const LOG_PREFIX = 'nimm-jupyter:';

/** What `comm.send` takes: a JSON value. */
type CommData = Parameters<Kernel.IComm['send']>[0];

/** An ack as comm data, field by field, so no cast can hide a wrong type. */
function ackJSON(ack: IAckMessage): CommData {
  const json: Record<string, string | number> = {
    type: ack.type,
    version: ack.version,
    run_id: ack.run_id,
    inserted: ack.inserted
  };
  if (ack.request_id !== undefined) {
    json.request_id = ack.request_id;
  }
  if (ack.error !== undefined) {
    json.error = ack.error;
  }
  return json;
}

/**
 * The notebook panels whose session talks to the kernel through this very
 * connection. A connection object, not a kernel id: two notebooks sharing a
 * kernel each receive the kernel's messages on their own connection, and must
 * not both insert the same cells.
 */
function panelsOf(tracker: INotebookTracker, kernel: Kernel.IKernelConnection): NotebookPanel[] {
  const panels: NotebookPanel[] = [];
  tracker.forEach(panel => {
    if (panel.sessionContext.session?.kernel === kernel) {
      panels.push(panel);
    }
  });
  return panels;
}

/** Handle one message from the kernel; returns the reply to send, if any. */
export function handleMessage(
  tracker: INotebookTracker,
  kernel: Kernel.IKernelConnection,
  data: unknown
): IAckMessage | null {
  const parsed = parseInsertCells(data);
  if (!parsed.ok) {
    console.warn(LOG_PREFIX, 'ignored a message on the comm:', parsed.reason, data);
    return null;
  }
  const message = parsed.message;
  // Views of one notebook share a model: insert into each model once.
  const models = [...new Set(panelsOf(tracker, kernel).map(p => p.content.model))];
  for (const model of models) {
    if (model && findCellIndex(model.sharedModel, message.after_cell_id) >= 0) {
      try {
        return ackFor(message, applyInsertCells(model.sharedModel, message));
      } catch (err) {
        console.warn(LOG_PREFIX, 'could not insert cells:', err);
        return ackFor(message, 0, String(err));
      }
    }
  }
  const reason = `no open notebook on this kernel has a cell with id ${message.after_cell_id}`;
  console.warn(LOG_PREFIX, 'ignored insert_cells:', reason);
  return ackFor(message, 0, reason);
}

type AckListener = (kernel: Kernel.IKernelConnection, ack: IAckMessage) => void;

/** Who is told of every ack this page sends (a command reports what was really inserted). */
const ackListeners = new Set<AckListener>();

/** Call `listener` with every ack sent from now on; returns the function that stops it. */
export function watchAcks(listener: AckListener): () => void {
  ackListeners.add(listener);
  return () => {
    ackListeners.delete(listener);
  };
}

function attach(tracker: INotebookTracker, kernel: Kernel.IKernelConnection, comm: Kernel.IComm): void {
  comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
    const reply = handleMessage(tracker, kernel, msg.content.data);
    if (reply && !comm.isDisposed) {
      comm.send(ackJSON(reply));
      ackListeners.forEach(listener => listener(kernel, reply));
    }
  };
}

/** Kernels whose target is registered (a restart keeps the connection and its targets). */
const registered = new WeakSet<Kernel.IKernelConnection>();

/**
 * Register the comm target on `kernel` (idempotent), then re-join comms the
 * kernel already has open to the target: after a page reload the kernel's
 * comm belongs to the previous page, so this page opens its own, which the
 * kernel side accepts in place of the old one.
 */
export function connectKernel(tracker: INotebookTracker, kernel: Kernel.IKernelConnection | null | undefined): void {
  if (!kernel || kernel.isDisposed || registered.has(kernel)) {
    return;
  }
  registered.add(kernel);
  kernel.registerCommTarget(TARGET, (comm, openMsg) => {
    attach(tracker, kernel, comm);
    const data = openMsg.content.data as { type?: unknown } | undefined;
    if (data?.type !== undefined && data.type !== 'hello') {
      console.warn(LOG_PREFIX, 'unexpected comm open data', data);
    }
    comm.send({ type: 'hello', version: PROTOCOL_VERSION });
  });
  void rejoin(tracker, kernel);
}

async function rejoin(tracker: INotebookTracker, kernel: Kernel.IKernelConnection): Promise<void> {
  let reply: KernelMessage.ICommInfoReplyMsg;
  try {
    reply = await kernel.requestCommInfo({ target_name: TARGET });
  } catch {
    return; // kernel gone or not answering comm_info: nothing to re-join
  }
  const content = reply.content;
  if (content.status !== 'ok' || kernel.isDisposed) {
    return;
  }
  const ids = Object.keys(content.comms ?? {});
  if (ids.length === 0 || ids.some(id => kernel.hasComm(id))) {
    return;
  }
  const comm = kernel.createComm(TARGET);
  attach(tracker, kernel, comm);
  comm.open({ type: 'hello', version: PROTOCOL_VERSION });
}
