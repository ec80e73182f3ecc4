"""A small client for a real Jupyter server: REST calls and one kernel driven over its websocket."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import websocket


@dataclass
class ExecutionResult:
    status: str
    stdout: str
    stderr: str
    error: str


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

    def execute(self, code: str, timeout: float = 120) -> ExecutionResult:
        """Start a kernel, run `code` over the websocket channel, collect its output, shut it down."""
        kernel_id = self.start_kernel()
        ws_url = self.base_url.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {self.token}"], timeout=timeout)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(
                json.dumps(
                    {
                        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
                        "parent_header": {},
                        "metadata": {},
                        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
                        "channel": "shell",
                    }
                )
            )
            stdout, stderr, error, status = [], [], "", ""
            replied = idle = False
            deadline = time.monotonic() + timeout
            while not (replied and idle):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kernel did not finish within {timeout} s; output so far: {''.join(stdout)}")
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    (stdout if content["name"] == "stdout" else stderr).append(content["text"])
                elif kind == "error":
                    error = f"{content['ename']}: {content['evalue']}"
                elif kind == "execute_reply":
                    status, replied = content["status"], True
                elif kind == "status" and content["execution_state"] == "idle":
                    idle = True
            return ExecutionResult(status, "".join(stdout), "".join(stderr), error)
        finally:
            ws.close()
            self.shutdown_kernel(kernel_id)
