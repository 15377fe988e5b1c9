"""The lab's Jupyter contents manager: notebooks open unmodified whatever the Python of the kernel.

JupyterLab writes the running kernel's ``language_info`` (which holds the Python version, e.g. ``3.11.7``) into a
notebook's metadata when the kernel connects, and so marks a notebook that was shipped with another version as
modified the moment it opens. This manager serves Python notebooks with the ``language_info`` of this
environment's IPython kernel already in place (what JupyterLab would write), so opening one changes nothing.
``fomm-lab lab`` selects it through ``jupyter_config/jupyter_server_config.json``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager


def kernel_language_info() -> dict[str, Any] | None:
    """The ``language_info`` this environment's IPython kernel reports (None without ipykernel)."""
    try:
        from ipykernel.ipkernel import IPythonKernel
    except ImportError:
        return None
    return dict(IPythonKernel.language_info)


def with_kernel_language_info(notebook: Any) -> Any:
    """``notebook`` (an nbformat node) with its Python kernel's ``language_info``; other notebooks as they are."""
    metadata = notebook.get("metadata", {})
    info = kernel_language_info()
    if info is not None and metadata.get("kernelspec", {}).get("language", "python") == "python" \
            and metadata.get("language_info", {}).get("name", "python") == "python":
        metadata["language_info"] = info
    return notebook


class LabContentsManager(AsyncLargeFileManager):
    """Jupyter's file contents manager, serving Python notebooks with this kernel's ``language_info``."""

    async def get(self, path: Any, content: Any = True, type: Any = None, format: Any = None,
                  require_hash: Any = False) -> Any:
        model = await super().get(path, content=content, type=type, format=format, require_hash=require_hash)
        if content and model.get("type") == "notebook" and model.get("content") is not None:
            with_kernel_language_info(model["content"])
        return model
