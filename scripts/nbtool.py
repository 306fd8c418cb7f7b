#!/usr/bin/env python
"""Keep chapter notebooks in house style before committing.

    python scripts/nbtool.py notebooks/*.ipynb

- puts the Colab setup cell (``tlkit.links.setup_cell_source()``) first and the
  environment check cell (``tlkit.check()``) right after the opening markdown;
- tags the ``PRESET`` cell as papermill's ``parameters`` cell;
- clears outputs and execution counts; sets kernelspec metadata to python3.
"""
from __future__ import annotations

import sys

import nbformat

from tlkit import links

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def tidy(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells
             if not (c.cell_type == "code" and (c.source.startswith(links.SETUP_MARKER)
                                                or c.source.strip() == links.ENV_CELL_SOURCE.strip()))]
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    setup = nbformat.v4.new_code_cell(links.setup_cell_source())
    env = nbformat.v4.new_code_cell(links.ENV_CELL_SOURCE)
    setup["id"], env["id"] = "tlkit-setup", "tlkit-env"  # stable ids keep diffs quiet
    cells[first_code:first_code] = [setup, env]
    for i, c in enumerate(cells):
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
            if 'PRESET = "auto"' in c.source:  # papermill's parameters cell
                tags = c.metadata.setdefault("tags", [])
                if "parameters" not in tags:
                    tags.append("parameters")
        c.setdefault("id", f"cell-{i}")
    nb.cells = cells
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata.setdefault("language_info", {"name": "python"})
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        tidy(p)
        print("tidied", p)
