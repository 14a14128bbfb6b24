/**
 * The search output of `%%nimm_search`: the live widget when its model exists, otherwise
 * the static snapshot that travels in the same display bundle.
 *
 * Why: ipywidgets' renderer for `application/vnd.jupyter.widget-view+json` wins over
 * `text/html` whenever the output is trusted, and when the model is gone (a notebook
 * reopened after its kernel ended, no saved widget state) it shows "Error displaying widget:
 * model not found" instead of falling back. The kernel therefore adds
 * {@link SEARCH_VIEW_MIME} to the bundle; this renderer, ranked above the widget renderer,
 * always renders the snapshot (`text/html`) and puts the widget renderer of the same
 * notebook beside it, hidden until it actually holds a live view. Front ends without this
 * extension ignore the extra mimetype and pick the widget or the HTML as before.
 */
import type { ISessionContext } from '@jupyterlab/apputils';
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Panel } from '@lumino/widgets';

/** Must match `nimm_jupyter/jupyter/widget.py` `SEARCH_VIEW_MIME`. */
export const SEARCH_VIEW_MIME = 'application/vnd.nimm-jupyter.search-view+json';
export const WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json';
/** Above ipywidgets' -10, so a bundle carrying both is rendered here. */
const RANK = -20;

/** The parts of a notebook's rendermime registry this renderer uses. */
interface IRendermime {
  createRenderer(mimeType: string): IRenderMime.IRenderer;
  getFactory(mimeType: string): IRenderMime.IRendererFactory | undefined;
  addFactory(factory: IRenderMime.IRendererFactory, rank?: number): void;
}

/**
 * Whether this notebook's widget renderer is bound to a widget manager (false with no
 * kernel, or without ipywidgets). ipywidgets replaces its unbound placeholder factory once
 * the session is ready, in promise continuations of that same `ready`: one macrotask later
 * the replacement is in place.
 */
async function widgetManagerBound(
  rendermime: IRendermime,
  session: ISessionContext,
  placeholder: IRenderMime.IRendererFactory | undefined
): Promise<boolean> {
  await session.ready;
  await new Promise(resolve => setTimeout(resolve, 0));
  const factory = rendermime.getFactory(WIDGET_VIEW_MIME);
  return !!session.session?.kernel && !!factory && factory !== placeholder;
}

class SearchViewRenderer extends Panel implements IRenderMime.IRenderer {
  private _snapshot: IRenderMime.IRenderer | null = null;
  private _live: Panel | null = null;
  private _liveModelId: string | null = null;
  private _observer: MutationObserver | null = null;

  constructor(
    private readonly _rendermime: IRendermime,
    private readonly _bound: () => Promise<boolean>
  ) {
    super();
    this.addClass('jp-nimm-search-view');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    if (!this._snapshot) {
      this._snapshot = this._rendermime.createRenderer('text/html');
      this.addWidget(this._snapshot);
    }
    await this._snapshot.renderModel(model);
    const view = model.data[WIDGET_VIEW_MIME] as { model_id?: string } | undefined;
    const modelId = view?.model_id ?? '';
    if (!modelId || modelId === this._liveModelId) {
      this._sync(); // an update of the same search: its live view keeps itself current
      return;
    }
    this._disposeLive();
    this._liveModelId = modelId; // set before waiting: a re-render meanwhile adds no second view
    if (!(await this._bound()) || this.isDisposed || this._liveModelId !== modelId) {
      this._sync();
      return; // no widget manager (or superseded): the snapshot is the whole output
    }
    // ipywidgets' renderer is a Panel that gets one child: the view, when the model exists
    const live = this._rendermime.createRenderer(WIDGET_VIEW_MIME) as unknown as Panel &
      IRenderMime.IRenderer;
    this._live = live;
    this.addWidget(live);
    this._sync();
    // It reports its outcome only in its own DOM (a view, or an error text): follow it.
    this._observer = new MutationObserver(() => this._sync());
    this._observer.observe(live.node, { childList: true });
    await live.renderModel(model);
    this._sync();
  }

  /** The live view when the widget renderer holds one, else the snapshot. */
  private _sync(): void {
    const live = this._live;
    const hasView = !!live && !live.isDisposed && live.widgets.length > 0;
    live?.setHidden(!hasView);
    this._snapshot?.setHidden(hasView);
    this.node.dataset.nimmView = hasView ? 'live' : 'snapshot';
  }

  private _disposeLive(): void {
    this._observer?.disconnect();
    this._observer = null;
    this._live?.dispose();
    this._live = null;
    this._liveModelId = null;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._disposeLive();
    super.dispose();
  }
}

/** Render {@link SEARCH_VIEW_MIME} outputs in this notebook (call when the panel is created,
 * before its outputs render). */
export function registerSearchView(rendermime: IRendermime, session: ISessionContext): void {
  const placeholder = rendermime.getFactory(WIDGET_VIEW_MIME);
  const bound = () => widgetManagerBound(rendermime, session, placeholder);
  rendermime.addFactory(
    {
      safe: false, // as the widget it may show; an untrusted output gets the sanitized HTML
      mimeTypes: [SEARCH_VIEW_MIME],
      createRenderer: () => new SearchViewRenderer(rendermime, bound)
    },
    RANK
  );
}
