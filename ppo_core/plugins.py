"""Plugins: packages that add env kinds, agents, objectives and their schemas to the training app
without the core naming them. A plugin declares a ``register()`` function under the entry-point group
``ppo_core.plugins`` (pyproject.toml); this project's alignment wing is one
(``ppo_core.align.plugin``). Registration must stay cheap: builders import their heavy libraries
(transformers) only when called."""

from __future__ import annotations

from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "ppo_core.plugins"
_loaded = False


def load_plugins() -> None:
    """Call every installed plugin's ``register()`` once per process."""
    global _loaded
    if _loaded:
        return
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            register = entry_point.load()
        except ImportError as error:
            raise ImportError(f"plugin {entry_point.name!r} ({entry_point.value}) cannot be imported: {error}") from error
        register()
    _loaded = True
