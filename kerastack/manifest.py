"""Per-cell manifests: what an image holds, rendered as JSON, Markdown and a CycloneDX SBOM. Pure.

The image carries the manifest that images/builder/write-manifest wrote at build time
(contract.MANIFEST_PATH). The build stage reads it back and adds what only exists once the image does
(its id, tags and size), so the report, the Markdown page and the SBOM all come from the same content.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from .config import Config
from .contract import LOCK_GROUPS, LOCKS_PATH, MANIFEST_PATH, VENV_GROUP
from .matrix import Cell, resolve

# Fixed namespace for the SBOM serial number: the same image always gets the same serial number.
_SERIAL_NAMESPACE = uuid.UUID("5b1f6f1e-6d0c-4d7e-9a43-7f3c1d9a2b10")


def facts(config: Config, cell: Cell, base_image: str) -> dict:
    """The MANIFEST_FACTS build argument: what versions.toml says about the cell, for write-manifest."""
    r = resolve(config, cell)
    expected = {"tensorflow": str(r.release.version), "keras": str(r.release.keras)}
    if r.cuda is not None:
        expected["cuda_runtime"] = r.cuda.runtime_version
    return {
        "cell": cell.id,
        "variant": cell.variant,
        "base_image": base_image,
        "cuda": {"version": str(r.cuda.version), "cudnn": str(r.cuda.cudnn)} if r.cuda else None,
        "tensorflow_built_with": {"cuda": str(r.release.built_with_cuda), "cudnn": str(r.release.built_with_cudnn)},
        "expected": expected,
    }


def with_image(in_image: dict, *, image_id: str, tags: list[str], size: int, os_layer_size: int | None, revision: str, created: str) -> dict:
    """The build report's manifest: the image's own manifest plus what the image cannot know about itself."""
    return {
        **in_image,
        "image": {"id": image_id, "tags": tags, "size": size, "os_packages_layer_size": os_layer_size, "revision": revision, "created": created},
    }


def to_markdown(manifest: dict) -> str:
    from .build_report import human

    v = manifest["versions"]
    image = manifest.get("image", {})
    rows = [
        ("Python", v.get("python")),
        ("TensorFlow", v.get("tensorflow")),
        ("Keras", v.get("keras")),
        ("CUDA", f"{v['cuda']} (runtime {v.get('cuda_runtime')})" if v.get("cuda") else "– (CPU)"),
        ("cuDNN", v.get("cudnn") or "–"),
        ("TensorFlow built with", f"CUDA {v['tensorflow_built_with']['cuda']}, cuDNN {v['tensorflow_built_with']['cudnn']}"),
        ("base image", f"`{manifest['base_image']}`"),
        ("image id", f"`{image.get('id', '')}`"),
        ("size", human(image.get("size"))),
        ("OS packages layer", human(image.get("os_packages_layer_size"))),
    ]
    lines = [f"# {manifest['cell']}", "", "| | |", "|---|---|", *(f"| {k} | {val} |" for k, val in rows), ""]
    if image.get("tags"):
        lines += ["Tags: " + ", ".join(f"`{t}`" for t in image["tags"]), ""]
    lines += ["## Python packages", "", "| package | version | layer |", "|---|---|---|"]
    lines += [f"| {p['name']} | {p['version']} | {p['group']} |" for p in manifest["python_packages"]]
    lines += ["", "## Debian packages", "", "| package | version | architecture |", "|---|---|---|"]
    lines += [f"| {p['name']} | {p['version']} | {p['architecture']} |" for p in manifest["debian_packages"]]
    lines += ["", f"The image holds this manifest at `{MANIFEST_PATH}` and its lock files in `{LOCKS_PATH}/`."]
    return "\n".join(lines) + "\n"


def to_cyclonedx(manifest: dict) -> str:
    """A CycloneDX 1.6 JSON SBOM of the manifest, made with cyclonedx-python-lib. Deterministic per image."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    image = manifest.get("image", {})
    ref = (image.get("tags") or [manifest["cell"]])[0]  # the immutable tag names exactly this build
    name, _, version = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    components = [
        Component(
            name=p["name"],
            version=p["version"],
            type=ComponentType.LIBRARY,
            purl=PackageURL("pypi", None, p["name"], p["version"]),
            bom_ref=f"pypi:{p['name']}@{p['version']}",
            properties=[Property(name="kerastack:layer", value=p["group"])],
        )
        for p in manifest["python_packages"]
    ]
    components += [
        Component(
            name=p["name"],
            version=p["version"],
            type=ComponentType.LIBRARY,
            purl=PackageURL("deb", "debian", p["name"], p["version"], {"arch": p["architecture"]}),
            bom_ref=f"deb:{p['name']}@{p['version']}",
        )
        for p in manifest["debian_packages"]
    ]
    v = manifest["versions"]
    properties = [Property(name=f"kerastack:{key}", value=str(value)) for key, value in sorted(v.items()) if value and not isinstance(value, dict)]
    properties += [Property(name="kerastack:cell", value=manifest["cell"]), Property(name="kerastack:base_image", value=manifest["base_image"])]
    created = image.get("created")
    root = Component(name=name, version=version or None, type=ComponentType.CONTAINER, bom_ref=image.get("id") or manifest["cell"])
    bom = Bom(
        components=components,
        serial_number=uuid.uuid5(_SERIAL_NAMESPACE, image.get("id") or json.dumps(manifest, sort_keys=True)),
        metadata=BomMetaData(
            component=root,
            properties=properties,
            timestamp=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        ),
    )
    bom.register_dependency(root, components)  # the image holds every package directly
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def rendered(manifest: dict) -> dict[str, str]:
    """File name -> text of the three forms of one cell's manifest: <cell>.json, .md and .cdx.json."""
    cell = manifest["cell"]
    return {
        f"{cell}.json": json.dumps(manifest, indent=2, sort_keys=True) + "\n",
        f"{cell}.md": to_markdown(manifest),
        f"{cell}.cdx.json": to_cyclonedx(manifest),
    }


# ---------------------------------------------------------------- README: what is in an image
README_BEGIN = "<!-- BEGIN packages: generated by `python -m kerastack readme` from the default CPU cell's lock; do not edit -->"
README_END = "<!-- END packages -->"
GROUP_TITLES = {
    "venv": "The venv's own tools",
    "cuda": "CUDA wheels (GPU images)",
    "tensorflow": "TensorFlow, Keras and what they need",
    "science": "The scientific Python stack",
    "data": "Data access: HDF5 tables, Excel, SQL, HTML, serialisation",
    "visualisation": "Plotting and interactive visualisation",
    "jupyter": "Jupyter, its extensions and what they need",
}


def packages_markdown(cell_id: str, lock_record: dict) -> str:
    """The README's package list: each lock group of a cell's lock.json, the packages versions.toml asks
    for in bold, the ones they bring along after them."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    requested = {canonicalize_name(Requirement(r).name) for r in lock_record["inputs"]["requirements"]}
    lines = [README_BEGIN, "", f"Python packages of `{cell_id}`, by layer (**bold**: asked for in `versions.toml`; the rest come with them):", ""]
    for group in (VENV_GROUP, *LOCK_GROUPS):
        pins = lock_record["groups"].get(group) or {}
        if not pins:
            continue
        names = sorted(pins, key=lambda n: (n not in requested, n))
        listed = ", ".join(f"**{n}** {pins[n]}" if n in requested else f"{n} {pins[n]}" for n in names)
        lines += [f"- {GROUP_TITLES.get(group, group)} (`{group}`, {len(pins)}): {listed}"]
    return "\n".join([*lines, "", README_END])


def with_readme_block(readme: str, block: str) -> str:
    """README text with its generated block replaced; PipelineError when the markers are missing."""
    from .errors import PipelineError

    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise PipelineError(f"README.md has no generated package block: put the lines {README_BEGIN!r} and {README_END!r} where it goes")
    return readme[:start] + block + readme[end + len(README_END) :]
