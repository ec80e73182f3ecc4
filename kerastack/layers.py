"""How much of an image a user already has: layer sharing between cells and upgrade downloads. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .build_report import CellReport
from .matrix import Cell, previous_release

LayerList = Sequence[tuple[str, int]]


def shared_bytes(layers: LayerList, others: Iterable[LayerList]) -> int:
    """Bytes of `layers` that at least one of the other images also has (counted once)."""
    elsewhere = {diff_id for other in others for diff_id, _ in other}
    return sum(size for diff_id, size in dict(layers).items() if diff_id in elsewhere)


def download_bytes(new: LayerList, have: LayerList) -> int:
    """Bytes a user who has `have` must download to get `new`."""
    present = {diff_id for diff_id, _ in have}
    return sum(size for diff_id, size in dict(new).items() if diff_id not in present)


def annotate_sharing(all_cells: Sequence[Cell], results: list[CellReport], known: Mapping[str, LayerList], previous: Mapping[str, LayerList]) -> None:
    """Fill the sharing fields of built cells. `known`: cell id -> layers of every cell image at hand
    (this run's and the engine's); `previous`: cell id -> layers of the image its tag had before this build."""
    by_id = {c.id: c for c in all_cells}
    for result in results:
        if result.status != "built":
            continue
        others = {cid: layer_list for cid, layer_list in known.items() if cid != result.cell}
        result.shared_bytes = shared_bytes(result.layers, others.values())
        result.shared_with = sorted(cid for cid, other in others.items() if shared_bytes(result.layers, [other]) > 0)
        older = previous_release(by_id[result.cell], all_cells) if result.cell in by_id else None
        if older is not None and older.id in known:
            result.upgrade_from = older.id
            result.upgrade_download_bytes = download_bytes(result.layers, known[older.id])
        if result.cell in previous:
            result.rebuild_download_bytes = download_bytes(result.layers, previous[result.cell])
