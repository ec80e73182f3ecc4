"""The host's CA bundle, for builds behind TLS-intercepting proxies. Passed only as a BuildKit secret."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .errors import PipelineError

CA_ENV_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")
SECRET_ID = "ca"


def find_bundle(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """--ca-bundle first, then SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT; None when none is set. Pure:
    the caller passes the environment (the CLI's options resolve it once)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise PipelineError(f"--ca-bundle {explicit}: no such file; give the PEM bundle of your proxy's CA")
        return path
    for var in CA_ENV_VARS:
        value = environ.get(var)
        if value:
            path = Path(value)
            if not path.is_file():
                raise PipelineError(f"{var}={value} names no file; unset it or point it at your CA bundle (PEM)")
            return path
    return None


def secret_spec(bundle: Path | None) -> list[str]:
    return [f"id={SECRET_ID},src={bundle}"] if bundle else []
