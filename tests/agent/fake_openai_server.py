"""A tiny OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies, for tests.

Each POST /v1/chat/completions pops the next scripted reply: (status, headers, body[, delay_s])
where a ``str`` body becomes the assistant message content of a normal completion, a callable
body is called with (request body, request headers) and its result used the same way (a server
that echoes what it was sent), and ``delay_s`` holds the reply back that long (a slow model).
Every request body is recorded in ``requests``. Run as a script, it serves a JSON script file: ``python -m
tests.agent.fake_openai_server SCRIPT.json PORTFILE``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str, prompt_tokens: int = 120, completion_tokens: int = 40) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class FakeServer:
    def __init__(self, script=None):
        self.script = list(script or [])
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send(200, {}, {"object": "list", "data": [{"id": "test", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append(body)
                server.headers_seen.append(dict(self.headers))
                if not server.script:
                    self._send(500, {}, {"error": {"message": "script exhausted"}})
                    return
                status, headers, payload, *delay = server.script.pop(0)
                if delay:
                    time.sleep(delay[0])
                if callable(payload):
                    payload = payload(body, dict(self.headers))
                if isinstance(payload, str):
                    payload = completion(payload)
                self._send(status, headers, payload)

            def _send(self, status, headers, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def error(status: int, message: str, headers: dict | None = None):
    return (status, headers or {}, {"error": {"message": message, "type": "invalid_request_error",
                                              "code": status}})


if __name__ == "__main__":
    script = [tuple(x) for x in json.load(open(sys.argv[1]))]
    with FakeServer(script) as fake:
        open(sys.argv[2], "w").write(str(fake.port))
        fake.thread.join()
