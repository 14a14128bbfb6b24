/**
 * Validation of the `nimm_jupyter.cells` messages (kernel side:
 * nimm_jupyter/jupyter/comm.py). Their format is defined once, in
 * nimm_jupyter/jupyter/cells_protocol.schema.json; the types are generated from
 * it into protocol_schema.ts.
 *
 * Validation is all-or-nothing: a message with one bad cell is rejected as a
 * whole, so a notebook never receives half an export.
 */

import {
  IAckMessage,
  IExportCell,
  IInsertCellsMessage,
  INimmTag,
  PROTOCOL_VERSION,
  ROLES,
  Role
} from './protocol_schema';

// The message types and constants are generated from the kernel's JSON schema.
export * from './protocol_schema';

/** Result of parsing: a message, or the reason it was rejected. */
export type ParseResult =
  | { ok: true; message: IInsertCellsMessage }
  | { ok: false; reason: string };

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function parseCell(cell: unknown, index: number, runId: string): IExportCell | string {
  if (!isObject(cell)) {
    return `cells[${index}] is not an object`;
  }
  const { cell_type: cellType, source, metadata } = cell;
  if (cellType !== 'code' && cellType !== 'markdown') {
    return `cells[${index}].cell_type must be "code" or "markdown", got ${JSON.stringify(cellType)}`;
  }
  let text: string;
  if (typeof source === 'string') {
    text = source;
  } else if (Array.isArray(source) && source.every(s => typeof s === 'string')) {
    text = source.join('');
  } else {
    return `cells[${index}].source must be a string`;
  }
  const meta = isObject(metadata) ? metadata : {};
  const nimm = isObject(meta.nimm) ? { ...meta.nimm } : {};
  if (nimm.run_id === undefined) {
    nimm.run_id = runId;
  } else if (String(nimm.run_id) !== runId) {
    return `cells[${index}].metadata.nimm.run_id ${JSON.stringify(nimm.run_id)} differs from run_id ${JSON.stringify(runId)}`;
  }
  if (nimm.node_id !== undefined && nimm.node_id !== null && !Number.isInteger(nimm.node_id)) {
    return `cells[${index}].metadata.nimm.node_id must be an integer`;
  }
  if (!ROLES.includes(nimm.role as Role)) {
    return `cells[${index}].metadata.nimm.role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(nimm.role)}`;
  }
  return {
    cell_type: cellType,
    source: text,
    metadata: { ...meta, nimm: nimm as INimmTag }
  };
}

/** Check a comm message's data against the `insert_cells` format. */
export function parseInsertCells(data: unknown): ParseResult {
  if (!isObject(data)) {
    return { ok: false, reason: 'message data is not an object' };
  }
  if (data.type !== 'insert_cells') {
    return { ok: false, reason: `unknown message type ${JSON.stringify(data.type)}` };
  }
  if (data.version !== PROTOCOL_VERSION) {
    return { ok: false, reason: `unsupported protocol version ${JSON.stringify(data.version)} (this extension speaks ${PROTOCOL_VERSION})` };
  }
  if (typeof data.after_cell_id !== 'string' || !data.after_cell_id) {
    return { ok: false, reason: 'after_cell_id must be a non-empty string' };
  }
  if (typeof data.run_id !== 'string' || !data.run_id) {
    return { ok: false, reason: 'run_id must be a non-empty string' };
  }
  if (!Array.isArray(data.cells) || data.cells.length === 0) {
    return { ok: false, reason: 'cells must be a non-empty list' };
  }
  const cells: IExportCell[] = [];
  for (let i = 0; i < data.cells.length; i++) {
    const cell = parseCell(data.cells[i], i, data.run_id);
    if (typeof cell === 'string') {
      return { ok: false, reason: cell };
    }
    cells.push(cell);
  }
  if (data.replace !== undefined && typeof data.replace !== 'boolean') {
    return { ok: false, reason: 'replace must be true or false' };
  }
  if (data.request_id !== undefined && (typeof data.request_id !== 'string' || !data.request_id)) {
    return { ok: false, reason: 'request_id must be a non-empty string' };
  }
  return {
    ok: true,
    message: {
      type: 'insert_cells',
      version: PROTOCOL_VERSION,
      after_cell_id: data.after_cell_id,
      run_id: data.run_id,
      cells,
      replace: data.replace !== false,
      ...(data.request_id !== undefined ? { request_id: data.request_id } : {})
    }
  };
}

/** The reply to an `insert_cells` message: `inserted` cells, or 0 and why. */
export function ackFor(request: { run_id: string; request_id?: string }, inserted: number, error?: string): IAckMessage {
  return {
    type: 'ack',
    version: PROTOCOL_VERSION,
    run_id: request.run_id,
    inserted,
    ...(request.request_id !== undefined ? { request_id: request.request_id } : {}),
    ...(error !== undefined ? { error } : {})
  };
}
