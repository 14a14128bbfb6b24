// GENERATED from nimm_jupyter/jupyter/cells_protocol.schema.json by
// labextension/scripts/protocol_types.py. Do not edit: change the schema, then run
// `python labextension/scripts/protocol_types.py` (tests/test_cells_protocol.py checks).

/** Comm target name shared with the kernel. */
export const TARGET = 'nimm_jupyter.cells';

/** Protocol version; an extension rejects a message of another version. */
export const PROTOCOL_VERSION = 1;

/** What an exported cell holds (nimm_jupyter.export.ROLES). */
export type Role = 'header' | 'model' | 'load' | 'plot';
export const ROLES: ReadonlyArray<Role> = ['header', 'model', 'load', 'plot'];

/** Handshake, either way: the side that owns the target answers the other's hello. */
export interface IHelloMessage {
  type: 'hello';
  version: 1;
}

/** metadata.nimm of an exported cell: which run and node it shows, and its role. */
export interface INimmTag {
  run_id: string;
  node_id?: number | null;
  role: Role;
  [key: string]: unknown;
}

export interface IExportCellMetadata {
  nimm: INimmTag;
  [key: string]: unknown;
}

/** One cell to insert; source is always one string. */
export interface IExportCell {
  cell_type: 'code' | 'markdown';
  source: string;
  metadata: IExportCellMetadata;
}

/** Kernel to frontend: put cells below the cell after_cell_id (with replace, in place of this run's earlier cells of the same node). */
export interface IInsertCellsMessage {
  type: 'insert_cells';
  version: 1;
  after_cell_id: string;
  run_id: string;
  cells: IExportCell[];
  replace: boolean;
  request_id?: string;
}

/** Frontend to kernel, after each insert_cells: how many cells were inserted (0 with an error when none were). request_id echoes the request's. */
export interface IAckMessage {
  type: 'ack';
  version: 1;
  run_id: string;
  request_id?: string;
  inserted: number;
  error?: string;
}
