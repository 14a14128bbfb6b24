/**
 * Applying an `insert_cells` message to a notebook model.
 *
 * Re-exporting a node replaces the cells of its earlier export where they are
 * (the same rule as `%nimm save`, nimm_jupyter/export.py::merge_cells), so a
 * user who moved them keeps their place; nodes exported for the first time go
 * below the search cell, after the cells this run already exported there.
 */
import type { INotebookModel } from '@jupyterlab/notebook';

import type { IExportCell, IInsertCellsMessage, INimmTag } from './protocol';

type SharedNotebook = INotebookModel['sharedModel'];
type NodeKey = string;

function tagOf(cell: { getMetadata(key: string): unknown }): Partial<INimmTag> | null {
  const tag = cell.getMetadata('nimm');
  return typeof tag === 'object' && tag !== null && !Array.isArray(tag)
    ? (tag as Partial<INimmTag>)
    : null;
}

function nodeKey(tag: Partial<INimmTag>): NodeKey {
  return tag.node_id === undefined || tag.node_id === null ? '' : String(tag.node_id);
}

/** Index of the cell with this id, or -1. */
export function findCellIndex(notebook: SharedNotebook, cellId: string): number {
  return notebook.cells.findIndex(cell => cell.id === cellId);
}

function toSharedCell(cell: IExportCell) {
  const metadata = JSON.parse(JSON.stringify(cell.metadata));
  return cell.cell_type === 'code'
    ? { cell_type: 'code', source: cell.source, metadata, outputs: [], execution_count: null }
    : { cell_type: 'markdown', source: cell.source, metadata };
}

/**
 * Insert the message's cells into `notebook` (one undoable transaction).
 * Returns the number of cells inserted; throws when the anchor cell is absent.
 */
export function applyInsertCells(notebook: SharedNotebook, message: IInsertCellsMessage): number {
  if (findCellIndex(notebook, message.after_cell_id) < 0) {
    throw new Error(`no cell with id ${message.after_cell_id} in this notebook`);
  }
  const groups = new Map<NodeKey, IExportCell[]>();
  for (const cell of message.cells) {
    const key = nodeKey(cell.metadata.nimm);
    groups.set(key, [...(groups.get(key) ?? []), cell]);
  }
  notebook.transact(() => {
    const pending: IExportCell[][] = [];
    for (const [key, group] of groups) {
      const old = message.replace
        ? notebook.cells
            .map((cell, index) => ({ cell, index }))
            .filter(({ cell }) => {
              const tag = tagOf(cell);
              return (
                cell.id !== message.after_cell_id &&
                tag !== null &&
                String(tag.run_id) === message.run_id &&
                nodeKey(tag) === key
              );
            })
            .map(({ index }) => index)
        : [];
      if (old.length === 0) {
        pending.push(group);
        continue;
      }
      for (const index of [...old].reverse()) {
        notebook.deleteCell(index);
      }
      notebook.insertCells(old[0], group.map(toSharedCell));
    }
    for (const group of pending) {
      // Below the search cell and below what this run exported there before.
      let at = findCellIndex(notebook, message.after_cell_id) + 1;
      while (at < notebook.cells.length && tagOf(notebook.cells[at])?.run_id === message.run_id) {
        at++;
      }
      notebook.insertCells(at, group.map(toSharedCell));
    }
  });
  return message.cells.length;
}
