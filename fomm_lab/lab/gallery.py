"""Source-image chooser: the photos of a folder and earlier uploads, an upload button, with a preview."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MediaError
from ..io.image import IMAGE_SUFFIXES


def _images(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


class ImageGallery:
    """Pick a photo from ``folder`` or from the uploads (saved into ``upload_dir``, and listed again after a
    kernel restart), or upload one; :attr:`path` is the choice. Display :attr:`widget`.

    ``selected`` (a path, e.g. the notebook's SOURCE_IMAGE) is preselected and added to the list when it lies
    outside ``folder``; :meth:`select` chooses another path the same way. ``on_choice`` is called (without
    arguments) when the user picks a photo or uploads one, not when :meth:`select` does.
    """

    def __init__(self, folder: str | Path, selected: str | Path | None = None, upload_dir: str | Path = "temp",
                 on_choice: Callable[[], None] | None = None) -> None:
        import ipywidgets as widgets

        self.folder, self.upload_dir = Path(folder), Path(upload_dir)
        self._on_choice = on_choice
        self._selecting = False
        options = _images(self.folder)
        for name, path in _images(self.upload_dir).items():
            options.setdefault(f"{name} (uploaded)", path)
        if selected is not None:
            selected = self._checked(selected)
            if selected not in options.values():
                options[selected.name if selected.name not in options else str(selected)] = selected
        if not options:
            raise MediaError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in '{self.folder}' and none selected; "
                             "add a photo there or upload one.")
        self._choice = widgets.Dropdown(options=options, value=selected if selected is not None else
                                        next(iter(options.values())), description="Photo")
        self._upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload")
        self._preview = widgets.Image(width=256)
        self._choice.observe(self._chosen, names="value")
        self._upload.observe(self._uploaded, names="value")
        self.widget = widgets.VBox([widgets.HBox([self._choice, self._upload]), self._preview])
        self._show()

    @staticmethod
    def _checked(path: str | Path) -> Path:
        path = Path(path)
        if not path.is_file():
            raise MediaError(f"Source image '{path}' does not exist; give an image file path (SOURCE_IMAGE).")
        return path

    @property
    def path(self) -> Path:
        """The chosen image file."""
        return self._choice.value

    def select(self, path: str | Path) -> None:
        """Choose ``path`` (added to the list when it is not there), as a parameter does: not a user's choice."""
        path = self._checked(path)
        options = dict(self._choice.options)
        self._selecting = True
        try:
            if path not in options.values():
                key = path.name if path.name not in options else str(path)
                self._choice.options = {**options, key: path}
            self._choice.value = path
        finally:
            self._selecting = False

    def _chosen(self, _change: dict[str, Any]) -> None:
        self._show()
        if not self._selecting and self._on_choice is not None:
            self._on_choice()

    def _show(self) -> None:
        self._preview.format = self.path.suffix.lstrip(".").lower().replace("jpg", "jpeg")
        self._preview.value = self.path.read_bytes()

    def _uploaded(self, change: dict[str, Any]) -> None:
        for item in change["new"]:
            self.upload_dir.mkdir(parents=True, exist_ok=True)
            target = self.upload_dir / Path(item["name"]).name
            target.write_bytes(bytes(item["content"]))
            options = {k: v for k, v in dict(self._choice.options).items() if v != target}
            self._selecting = True
            try:
                self._choice.options = {**options, f"{target.name} (uploaded)": target}
                self._choice.value = target
            finally:
                self._selecting = False
            self._show()  # the bytes may be new under the same name
            if self._on_choice is not None:  # a user's choice
                self._on_choice()
