"""What an editor user sees: the real yaml-language-server (VS Code's YAML extension) over the bundle.

Skipped unless the server is installed: ``npm install yaml-language-server@2`` and either put its
``node_modules/.bin`` on PATH or set ``YAML_LANGUAGE_SERVER`` to the executable (CI does; see
docs/editors.md). The client below speaks just enough LSP over stdio: initialize, open a file whose
modeline names the bundle, wait for its diagnostics, ask for completions.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest

from flowctl.cli.schema import bundle_schema, dumps

SERVER = os.environ.get("YAML_LANGUAGE_SERVER") or shutil.which("yaml-language-server")
pytestmark = pytest.mark.skipif(
    not SERVER or not shutil.which("node"),
    reason="yaml-language-server (npm) is not installed: set YAML_LANGUAGE_SERVER or put it on PATH",
)

FLOW = """\
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome}
spec:
  object: contact
  trigger: {on: created}
  start: call
  nodes:
    call:
      type: create_task
      title: Call the customer
      assignee:·
      next: tell
    tell:
      type: notify
      to:·
      text: hi
    later:
     ·
    wait:
      type: wait_event
      event: ticket.created
      for: 3 days
    boss:
      type: create_task
      title: Call the customer
      assignee:
       ·
""".replace("·", " ")  # where the cursor is: the editor has typed the spaces


class Lsp:
    """A language server child process and the JSON-RPC messages it sends."""

    def __init__(self, command: list[str], settings: dict[str, Any]) -> None:
        self.settings = settings
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            length = 0
            while line := self.proc.stdout.readline().strip():  # the headers, up to a blank line (or EOF)
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if not length:
                self.inbox.put(None)
                return
            self.inbox.put(json.loads(self.proc.stdout.read(length)))

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def request(self, method: str, params: Any, timeout: float = 60) -> Any:
        self.next_id += 1
        wanted = self.next_id
        self.send({"id": wanted, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self.pump(deadline)
            if message.get("id") == wanted and "method" not in message:
                assert "error" not in message, message
                return message.get("result")

    def pump(self, deadline: float) -> dict[str, Any]:
        """The next message, answering the server's own requests (its settings) on the way."""
        try:
            message = self.inbox.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise AssertionError("yaml-language-server did not answer in time") from None
        assert message is not None, "yaml-language-server exited"
        if message.get("method") == "workspace/configuration":
            items = message["params"]["items"]
            self.send({"id": message["id"], "result": [self.settings.get(i.get("section"), {}) for i in items]})
        elif "method" in message and "id" in message:
            self.send({"id": message["id"], "result": None})
        elif message.get("method") == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        return message

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=5)
            self.send({"method": "exit"})
            self.proc.wait(timeout=5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The diagnostics and some completions of FLOW, as the editor shows them."""
    folder = tmp_path_factory.mktemp("editor")
    schema = folder / "flowctl.bundle.schema.json"
    schema.write_text(dumps(bundle_schema()), encoding="utf-8")
    document = folder / "welcome.yaml"
    text = f"# yaml-language-server: $schema={schema.as_uri()}\n{FLOW}"
    document.write_text(text, encoding="utf-8")
    settings = {"yaml": {"validate": True, "completion": True, "hover": True, "schemaStore": {"enable": False}}}
    assert SERVER is not None
    server = Lsp([SERVER, "--stdio"], settings)
    try:
        capabilities = {
            "workspace": {"configuration": True},
            "textDocument": {"completion": {"completionItem": {"snippetSupport": True}}},
        }
        server.request(
            "initialize", {"processId": os.getpid(), "rootUri": folder.as_uri(), "capabilities": capabilities}
        )
        server.send({"method": "initialized", "params": {}})
        server.send({"method": "workspace/didChangeConfiguration", "params": {"settings": settings}})
        uri = document.as_uri()
        opened = {"uri": uri, "languageId": "yaml", "version": 1, "text": text}
        server.send({"method": "textDocument/didOpen", "params": {"textDocument": opened}})
        deadline = time.monotonic() + 60
        while uri not in server.diagnostics:
            server.pump(deadline)

        def complete(line: int, col: int) -> list[str]:
            """Labels offered at a 1-based line and column of FLOW."""
            position = {"line": line, "character": col - 1}  # line: FLOW's line 1 is the file's line 2
            result = server.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": position})
            items = result.get("items", []) if isinstance(result, dict) else result or []
            return [item["label"] for item in items]

        return {
            "diagnostics": [(d["range"]["start"]["line"], d["message"]) for d in server.diagnostics[uri]],
            "assignee": complete(12, 17),
            "notify to": complete(16, 11),
            "blank node": complete(19, 7),
            "blank assignee": complete(28, 9),
        }
    finally:
        server.close()


def test_a_pattern_error_says_what_is_expected(editor: dict[str, Any]) -> None:
    (message,) = [m for line, m in editor["diagnostics"] if line == 23]  # for: 3 days
    assert message.startswith("a duration such as 30m, 2h, 1d12h"), editor["diagnostics"]
    assert not [m for _, m in editor["diagnostics"] if "pattern" in m or "^" in m]


@pytest.mark.parametrize("where", ["assignee", "notify to", "blank assignee"])
def test_who_is_offered_in_words(editor: dict[str, Any], where: str) -> None:
    labels = editor[where]
    assert {"owner", "supervisor", "{user: …}"} <= set(labels), labels
    assert "{rule: …}" in labels, labels  # notify's to: takes an assignee too
    assert not [label for label in labels if "[object Object]" in label], labels


def test_a_new_node_is_offered_as_snippets_with_word_labels(editor: dict[str, Any]) -> None:
    labels = editor["blank node"]
    assert {"send_email node", "create_task node", "branch node", "wait_event node"} <= set(labels), labels
    assert "flow node" in labels
    assert not [label for label in labels if "." in label], labels  # not flow.node, common.node_send_email
