/**
 * The kernel -> frontend message format of the `nimm_jupyter.cells` comm
 * (kernel side: nimm_jupyter/jupyter/comm.py), and its validation.
 *
 * Validation is all-or-nothing: a message with one bad cell is rejected as a
 * whole, so a notebook never receives half an export.
 */

/** Comm target name shared with the kernel. */
export const TARGET = 'nimm_jupyter.cells';

/** Protocol version this extension speaks. */
export const PROTOCOL_VERSION = 1;

/** The `metadata.nimm` tag carried by every exported cell. */
export interface INimmTag {
  run_id: string;
  node_id?: number;
  role?: string;
  [key: string]: unknown;
}

/** One cell to insert. */
export interface IExportCell {
  cell_type: 'code' | 'markdown';
  source: string;
  metadata: { nimm: INimmTag; [key: string]: unknown };
}

/** `{"type": "insert_cells", ...}`: put `cells` below the cell `after_cell_id`. */
export interface IInsertCellsMessage {
  type: 'insert_cells';
  version: number;
  after_cell_id: string;
  run_id: string;
  cells: IExportCell[];
  replace: boolean;
}

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
  return {
    ok: true,
    message: {
      type: 'insert_cells',
      version: PROTOCOL_VERSION,
      after_cell_id: data.after_cell_id,
      run_id: data.run_id,
      cells,
      replace: data.replace !== false
    }
  };
}
