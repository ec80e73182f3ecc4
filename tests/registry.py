"""A real registry for tests: Debian's docker-registry (distribution v2) on 127.0.0.1 with a temporary store."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


@dataclass
class LocalRegistry:
    root: Path
    port: int
    user: str | None = None
    password: str | None = None
    process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalRegistry:
        if self.process and self.process.poll() is None:
            return self  # already serving: a second process would leak the first one
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        if not Path(binary).exists():
            pytest.fail("docker-registry is not installed: run scripts/install-test-deps.sh as root (or apt-get install docker-registry)")
        config = [
            "version: 0.1",
            "log: {level: warn}",
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}, delete: {{enabled: true}}}}",
            f"http: {{addr: {self.host}}}",
        ]
        if self.user:
            htpasswd = subprocess.run(["htpasswd", "-Bbn", self.user, self.password], capture_output=True, text=True, check=True).stdout
            (self.root / "htpasswd").write_text(htpasswd)
            config.append(f"auth: {{htpasswd: {{realm: kerastack-test, path: {self.root / 'htpasswd'}}}}}")
        (self.root / "config.yml").write_text("\n".join(config) + "\n")
        with open(self.root / "log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([binary, "serve", str(self.root / "config.yml")], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"docker-registry exited: {(self.root / 'log').read_text()[-2000:]}")
            try:
                self.get("/v2/")
                return self
            except urllib.error.HTTPError as exc:
                if exc.code == 401:
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("docker-registry did not answer within 20 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def remove_local_tags(self) -> list[str]:
        """Untag this registry's references in the local engine: pushes tag `HOST:PORT/...` locally, and
        the port is this registry's own, so these tags are exactly the ones its tests made."""
        from kerastack.docker_client import Docker

        docker = Docker()
        mine = sorted({t for image in docker.client.image.list() for t in image.repo_tags if t.startswith(f"{self.host}/")})
        docker.remove_images(mine)
        return mine

    def get(self, path: str, accept: str | None = None, method: str = "GET") -> tuple[dict, dict]:
        request = urllib.request.Request(f"http://{self.host}{path}", method=method)
        if accept:
            request.add_header("Accept", accept)
        if self.user:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return dict(response.headers), (json.loads(body) if body and method == "GET" else {})

    def tags(self, repository: str) -> set[str]:
        try:
            return set(self.get(f"/v2/{repository}/tags/list")[1].get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return set()
            raise

    def digest(self, repository: str, tag: str) -> str:
        headers, _ = self.get(f"/v2/{repository}/manifests/{tag}", accept=MANIFEST_TYPES, method="HEAD")
        return headers["Docker-Content-Digest"]
