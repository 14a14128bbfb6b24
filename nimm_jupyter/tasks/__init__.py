"""Task layer: what is modelled. ``get(name, **options)`` builds a registered task."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .base import DataSource, Scenario, Split, Task, TaskDataError, TaskKind, TaskSpec, Variable
from .dataframe import task_from_dataframe

# Built-in factories are named as "module:function" so that importing the registry stays
# cheap; each factory takes keyword options (sizes, seeds, variants) and returns a Task.
_BUILTINS: dict[str, str] = {
    "lung_cancer": "nimm_jupyter.tasks.lung_cancer:make_lung_cancer",
    "lung_cancer_chemo": "nimm_jupyter.tasks.lung_cancer:make_lung_cancer_chemo",
    "lung_cancer_chemo_radio": "nimm_jupyter.tasks.lung_cancer:make_lung_cancer_chemo_radio",
    "influenza_usa": "nimm_jupyter.tasks.influenza:make_influenza_usa",
    "hea_fcc_rt": "nimm_jupyter.tasks.hea:make_hea_fcc_rt",
    "hea_bcc_temp": "nimm_jupyter.tasks.hea:make_hea_bcc_temp",
    "covid_bogota_synthetic": "nimm_jupyter.tasks.metapop.covid:make_covid_bogota_synthetic",
    "covid_medellin_synthetic": "nimm_jupyter.tasks.metapop.covid:make_covid_medellin_synthetic",
    "mrsa_virginia_synthetic": "nimm_jupyter.tasks.metapop.mrsa:make_mrsa_virginia_synthetic",
}
_USER: dict[str, Callable[..., Task]] = {}


class UnknownTaskError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register(name: str, factory: Callable[..., Task]) -> None:
    """Register a task factory under ``name`` (overrides a built-in of the same name)."""
    _USER[name] = factory


def unregister(name: str) -> None:
    """Remove a task registered with :func:`register` (built-ins cannot be removed)."""
    _USER.pop(name, None)


def list_tasks() -> list[str]:
    """Names of all registered tasks, built-ins first."""
    return list(_BUILTINS) + [n for n in _USER if n not in _BUILTINS]


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in task (rebuildable in any fresh process, unlike tasks
    added with :func:`register`)."""
    return name in _BUILTINS


def _factory(name: str) -> Callable[..., Task]:
    if name in _USER:
        return _USER[name]
    if name not in _BUILTINS:
        raise UnknownTaskError(
            f"unknown task {name!r}; available: {', '.join(list_tasks())}"
        )
    module, func = _BUILTINS[name].split(":")
    return getattr(importlib.import_module(module), func)


def accepts_option(name: str, key: str) -> bool:
    """Whether the factory of task ``name`` takes the keyword option ``key``."""
    import inspect

    try:
        params = inspect.signature(_factory(name)).parameters.values()
    except (UnknownTaskError, TypeError, ValueError):
        return False
    return any(p.name == key or p.kind is p.VAR_KEYWORD for p in params)


def parse_options(pairs: list[str] | None, flag: str = "--option") -> dict[str, Any]:
    """``["n_patients=50", "states=['CA','NV']"]`` -> ``{"n_patients": 50, "states": [...]}``.

    Values are Python/JSON literals when they parse (``200``, ``true``, ``0.5``, lists),
    otherwise plain text. Raises ``ValueError`` naming ``flag`` and a malformed pair.
    """
    import ast
    import json

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"{flag} needs KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            try:
                out[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                out[key] = value
    return out


def get(name: str, **options: Any) -> Task:
    """Build the task ``name``; ``options`` are passed to its factory (e.g. ``n_patients``)."""
    return _factory(name)(**options)


__all__ = [
    "DataSource", "Scenario", "Split", "Task", "TaskDataError", "TaskKind", "TaskSpec", "Variable",
    "UnknownTaskError", "accepts_option", "get", "is_builtin", "list_tasks", "parse_options",
    "register", "task_from_dataframe", "unregister",
]
