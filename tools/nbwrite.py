"""Write a notebook from a list of (kind, source) cells: keeps committed notebooks output-free.

Usage from Python: ``write(path, cells)`` where the first code cell is tagged ``parameters``.
"""
from __future__ import annotations

import sys

import nbformat


def write(path, cells, parameters_index: int = 1):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(cells):
        cell = (nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell)(
            src.strip("\n"))
        if i == parameters_index:
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nbformat.validate(nb)
    nbformat.write(nb, path)


def strip(path):
    """Remove outputs and execution counts from a notebook in place."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        strip(p)
