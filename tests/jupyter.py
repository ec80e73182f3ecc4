"""A small client for a real Jupyter server: REST calls and one kernel driven over its websocket."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import websocket


@dataclass
class ExecutionResult:
    status: str
    stdout: str
    stderr: str
    error: str
    outputs: list[dict] = field(default_factory=list)  # nbformat 4 outputs, in order
    execution_count: int | None = None


class Kernel:
    """One kernel driven over its websocket channel; cells run one after another in the same namespace."""

    def __init__(self, server: JupyterServer, kernel_id: str, timeout: float = 120) -> None:
        self.server = server
        self.kernel_id = kernel_id
        ws_url = server.base_url.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {server.token}"], timeout=timeout)
        self.session = uuid.uuid4().hex

    def close(self) -> None:
        self.ws.close()

    def execute(self, code: str, timeout: float = 120) -> ExecutionResult:
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {"msg_id": msg_id, "username": "test", "session": self.session, "msg_type": "execute_request", "version": "5.3"},
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False},
                    "channel": "shell",
                }
            )
        )
        result = ExecutionResult("", "", "", "")
        stdout, stderr = [], []
        replied = idle = False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernel did not finish within {timeout} s; output so far: {''.join(stdout)}")
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (stdout if content["name"] == "stdout" else stderr).append(content["text"])
                result.outputs.append({"output_type": "stream", "name": content["name"], "text": content["text"]})
            elif kind in ("display_data", "execute_result"):
                output = {"output_type": kind, "data": content["data"], "metadata": content.get("metadata", {})}
                if kind == "execute_result":
                    output["execution_count"] = content["execution_count"]
                result.outputs.append(output)
            elif kind == "error":
                result.error = f"{content['ename']}: {content['evalue']}"
                result.outputs.append({"output_type": "error", "ename": content["ename"], "evalue": content["evalue"], "traceback": content["traceback"]})
            elif kind == "execute_reply":
                result.status, result.execution_count, replied = content["status"], content.get("execution_count"), True
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        result.stdout, result.stderr = "".join(stdout), "".join(stderr)
        return result


class JupyterServer:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, *, token: str | None = "use-own", body: dict | None = None) -> tuple[int, dict | str]:
        headers = {"Content-Type": "application/json"}
        token = self.token if token == "use-own" else token
        if token is not None:
            headers["Authorization"] = f"token {token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read().decode()
                if "json" in response.headers.get("Content-Type", ""):
                    return response.status, json.loads(raw) if raw else {}
                return response.status, raw
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def start_kernel(self) -> str:
        status, body = self.request("POST", "/api/kernels", body={"name": "python3"})
        assert status == 201, f"starting a kernel failed: {status} {body}"
        assert isinstance(body, dict)
        return body["id"]

    def shutdown_kernel(self, kernel_id: str) -> None:
        self.request("DELETE", f"/api/kernels/{kernel_id}")

    @contextmanager
    def notebook_session(self, path: str, timeout: float = 120) -> Iterator[Kernel]:
        """A kernel opened for a notebook the way JupyterLab does it (POST /api/sessions): it runs in the notebook's folder."""
        status, body = self.request("POST", "/api/sessions", body={"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}})
        assert status == 201 and isinstance(body, dict), f"opening a session for {path} failed: {status} {body}"
        kernel = Kernel(self, body["kernel"]["id"], timeout)
        try:
            yield kernel
        finally:
            kernel.close()
            self.request("DELETE", f"/api/sessions/{body['id']}")

    def execute(self, code: str, timeout: float = 120) -> ExecutionResult:
        """Start a kernel, run `code` over the websocket channel, collect its output, shut it down."""
        kernel_id = self.start_kernel()
        kernel = Kernel(self, kernel_id, timeout)
        try:
            return kernel.execute(code, timeout)
        finally:
            kernel.close()
            self.shutdown_kernel(kernel_id)
