"""Multi-platform indexes (OCI image index / Docker manifest list), read as `imagetools inspect --raw` prints
them. Pure: which manifest of an index serves a platform.

An official base is pinned by its index digest and built on per platform; a published cell tag is an index
of every platform of its cell. Both are read here the same way.
"""

from __future__ import annotations

import re

from .errors import PipelineError

INDEX_MEDIA_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)


def is_index(document: object) -> bool:
    """Whether a manifest document is an index (it lists manifests) rather than one image's manifest."""
    return isinstance(document, dict) and (document.get("mediaType") in INDEX_MEDIA_TYPES or isinstance(document.get("manifests"), list))


def platforms(document: object) -> dict[str, str]:
    """`os/architecture` -> manifest digest of an index's image manifests. Attestation manifests
    (`unknown/unknown`) are left out; an entry of the wrong shape, or a platform listed twice, is an error."""
    manifests = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(manifests, list):
        raise ValueError("not an index: no manifests list")
    found: dict[str, str] = {}
    for entry in manifests:
        platform = entry.get("platform") if isinstance(entry, dict) else None
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(platform, dict) or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ValueError(f"an entry without a platform or a sha256 digest: {str(entry)[:120]}")
        name = f"{platform.get('os')}/{platform.get('architecture')}"
        if name == "unknown/unknown":
            continue
        if name in found:
            raise ValueError(f"{name} is listed twice")
        found[name] = digest
    return found


def platform_manifest(document: object, platform: str, ref: str) -> str:
    """The digest of `platform`'s image manifest in the index `ref` holds; PipelineError naming what is there."""
    try:
        listed = platforms(document)
    except ValueError as exc:
        raise PipelineError(f"{ref} is not a usable multi-platform index ({exc}): pin or publish an index") from None
    if platform not in listed:
        raise PipelineError(f"{ref} has no {platform} image (it lists {', '.join(sorted(listed)) or 'none'})")
    return listed[platform]
