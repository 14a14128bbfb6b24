/**
 * nimm-jupyter JupyterLab extension: inserts the model cells a search exports
 * below the search cell (comm target `nimm_jupyter.cells`), and adds
 * "export best" / "stop" commands to the palette, notebook toolbar and
 * notebook context menu. It also renders a search's output as its live widget or, when the
 * widget's model is gone (a reopened notebook), as its static snapshot.
 */
import type { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, type NotebookPanel } from '@jupyterlab/notebook';
import { ToolbarButton, downloadIcon, stopIcon } from '@jupyterlab/ui-components';
import { DisposableDelegate } from '@lumino/disposable';

import { COMMAND_LABELS, CommandIDs, executeNimmCommand, targetPanel } from './commands';
import { connectKernel } from './comm';
import { registerSearchView } from './searchview';

function watchPanel(tracker: INotebookTracker, panel: NotebookPanel): void {
  const context = panel.sessionContext;
  registerSearchView(panel.content.rendermime, context);
  connectKernel(tracker, context.session?.kernel);
  // A changed kernel is a new connection (restarts keep the old one).
  context.kernelChanged.connect((_, change) => connectKernel(tracker, change.newValue));
}

function addCommands(app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null): void {
  const tooltips: Record<string, string> = {
    [CommandIDs.exportBest]: 'Insert the best model of the latest search as cells below its search cell (%nimm export best)',
    [CommandIDs.stop]: 'Stop the running search of this kernel (%nimm stop)'
  };
  for (const id of [CommandIDs.exportBest, CommandIDs.stop]) {
    app.commands.addCommand(id, {
      label: COMMAND_LABELS[id],
      caption: tooltips[id],
      icon: id === CommandIDs.stop ? stopIcon : downloadIcon,
      isEnabled: () => targetPanel(tracker) !== null,
      execute: () => {
        const panel = targetPanel(tracker);
        return panel ? executeNimmCommand(panel, id) : false;
      }
    });
    palette?.addItem({ command: id, category: 'Nimm' });
    app.contextMenu.addItem({ command: id, selector: '.jp-Notebook', rank: 60 });
  }
  tracker.currentChanged.connect(() => app.commands.notifyCommandChanged());

  app.docRegistry.addWidgetExtension('Notebook', {
    createNew: (panel: NotebookPanel) => {
      const buttons = [
        ['nimm-export', CommandIDs.exportBest, 'Export best', downloadIcon],
        ['nimm-stop', CommandIDs.stop, 'Stop search', stopIcon]
      ] as const;
      const widgets = buttons.map(([name, id, label, icon]) => {
        const button = new ToolbarButton({
          className: `jp-nimm-toolbar-${name}`,
          icon,
          label,
          tooltip: tooltips[id],
          onClick: () => void executeNimmCommand(panel, id)
        });
        if (!panel.toolbar.insertAfter('cellType', name, button)) {
          panel.toolbar.addItem(name, button);
        }
        return button;
      });
      return new DisposableDelegate(() => widgets.forEach(w => w.dispose()));
    }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nimm-jupyter:plugin',
  description: 'Inserts exported nimm model cells into notebooks; export/stop commands.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null) => {
    tracker.forEach(panel => watchPanel(tracker, panel));
    tracker.widgetAdded.connect((_, panel) => watchPanel(tracker, panel));
    addCommands(app, tracker, palette);
  }
};

export default plugin;
