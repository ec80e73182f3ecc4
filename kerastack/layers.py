"""How much of an image a user already has: layer sharing between cells and upgrade downloads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from . import docker_client
from .config import Config
from .matrix import Cell
from .report import CellReport
from .tags import cell_tag

LayerList = Sequence[tuple[str, int]]


def shared_bytes(layers: LayerList, others: Iterable[LayerList]) -> int:
    """Bytes of `layers` that at least one of the other images also has (counted once)."""
    elsewhere = {diff_id for other in others for diff_id, _ in other}
    return sum(size for diff_id, size in dict(layers).items() if diff_id in elsewhere)


def download_bytes(new: LayerList, have: LayerList) -> int:
    """Bytes a user who has `have` must download to get `new`."""
    present = {diff_id for diff_id, _ in have}
    return sum(size for diff_id, size in dict(new).items() if diff_id not in present)


def previous_release(cell: Cell, all_cells: Sequence[Cell]) -> Cell | None:
    """The cell of the next lower TensorFlow release with the same Python, variant and CUDA."""
    older = [c for c in all_cells if (c.python, c.variant, c.cuda) == (cell.python, cell.variant, cell.cuda) and c.tensorflow < cell.tensorflow]
    return max(older, default=None)


def annotate_sharing(config: Config, all_cells: Sequence[Cell], results: list[CellReport]) -> None:
    """Fill the sharing fields of built cells from this run's layers and the local images of other cells."""
    known: dict[str, LayerList] = {r.cell: r.layers for r in results if r.status == "built"}
    for cell in all_cells:
        if cell.id not in known:
            ref = f"{config.image}:{cell_tag(cell)}"
            if docker_client.image_id(ref):
                known[cell.id] = [(layer.diff_id, layer.size) for layer in docker_client.layers(ref)]
    by_id = {c.id: c for c in all_cells}
    for result in results:
        if result.status != "built":
            continue
        others = {cid: layer_list for cid, layer_list in known.items() if cid != result.cell}
        result.shared_bytes = shared_bytes(result.layers, others.values())
        result.shared_with = sorted(cid for cid, other in others.items() if shared_bytes(result.layers, [other]) > 0)
        previous = previous_release(by_id[result.cell], all_cells) if result.cell in by_id else None
        if previous is not None and previous.id in known:
            result.upgrade_from = previous.id
            result.upgrade_download_bytes = download_bytes(result.layers, known[previous.id])
        if result.previous_image_id and docker_client.image_id(result.previous_image_id):
            old = [(layer.diff_id, layer.size) for layer in docker_client.layers(result.previous_image_id)]
            result.rebuild_download_bytes = download_bytes(result.layers, old)
