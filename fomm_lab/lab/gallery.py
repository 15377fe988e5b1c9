"""Source-image chooser: the photos of a folder plus an upload button, with a preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MediaError
from ..io.image import IMAGE_SUFFIXES


class ImageGallery:
    """Pick a photo from ``folder`` (or upload one, saved into ``upload_dir``); :attr:`path` is the choice.

    ``selected`` (a path, e.g. the notebook's SOURCE_IMAGE) is preselected and added to the list
    when it lies outside ``folder``. Display :attr:`widget`.
    """

    def __init__(self, folder: str | Path, selected: str | Path | None = None, upload_dir: str | Path = "temp") -> None:
        import ipywidgets as widgets

        self.folder, self.upload_dir = Path(folder), Path(upload_dir)
        options = {p.name: p for p in sorted(self.folder.glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
        if selected is not None:
            selected = Path(selected)
            if not selected.is_file():
                raise MediaError(f"Source image '{selected}' does not exist; give an image file path.")
            options.setdefault(selected.name, selected)
        if not options:
            raise MediaError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in '{self.folder}' and none selected; "
                             "add a photo there or upload one.")
        self._choice = widgets.Dropdown(options=options, value=selected if selected is not None else
                                        next(iter(options.values())), description="Photo")
        self._upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload")
        self._preview = widgets.Image(width=256)
        self._choice.observe(lambda _change: self._show(), names="value")
        self._upload.observe(self._uploaded, names="value")
        self.widget = widgets.VBox([widgets.HBox([self._choice, self._upload]), self._preview])
        self._show()

    @property
    def path(self) -> Path:
        """The chosen image file."""
        return self._choice.value

    def _show(self) -> None:
        self._preview.format = self.path.suffix.lstrip(".").lower().replace("jpg", "jpeg")
        self._preview.value = self.path.read_bytes()

    def _uploaded(self, change: dict[str, Any]) -> None:
        for item in change["new"]:
            self.upload_dir.mkdir(parents=True, exist_ok=True)
            target = self.upload_dir / Path(item["name"]).name
            target.write_bytes(bytes(item["content"]))
            self._choice.options = {**dict(self._choice.options), target.name: target}
            self._choice.value = target
