"""A browser harness for the Jupyter widget: the real front-end module, the real Python
widget, and a WebSocket in place of the Jupyter comm.

The page at ``/`` imports the packaged ``widget.js`` and renders it with a small model
object implementing anywidget's model interface (get / set / on / off / save_changes /
send). The model talks to :class:`WidgetBridge` over a WebSocket using the ipywidgets
comm messages themselves: ``{"method": "update", "state", "buffer_paths"}`` and
``{"method": "custom", "content"}``, each JSON frame followed by its buffers as binary
frames (as Jupyter's own protocol carries them). On the Python side the bridge replaces the
widget's comm, so state sync and custom messages go through ipywidgets' real serialisation
and ``Widget._handle_msg``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web
import tornado.websocket
from ipywidgets.widgets.widget import _remove_buffers

from napari_seem._jupyter.widget import SeemWidget

STATIC = Path(__file__).resolve().parents[2] / "src" / "napari_seem" / "_jupyter" / "static"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>napari-seem widget harness</title>
<link rel="stylesheet" href="/static/widget.css">
<style>body { margin: 0; padding: 16px; background: #f6f7f9; font-family: system-ui; }
#out { max-width: 920px; }</style></head>
<body><div id="out"></div>
<script type="module">
import widget from "/static/widget.js";
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.binaryType = "arraybuffer";
const state = {};
const listeners = new Map();
let dirty = {};
let frame = null;
let rendered = false;
const emit = (name, ...args) => (listeners.get(name) || []).slice().forEach((cb) => cb(...args));
function putBuffers(target, paths, buffers) {
  paths.forEach((path, i) => {
    let obj = target;
    for (const key of path.slice(0, -1)) obj = obj[key];
    obj[path[path.length - 1]] = new DataView(buffers[i]);
  });
}
function post(data, buffers = []) {
  ws.send(JSON.stringify({ data, nbuf: buffers.length }));
  for (const b of buffers) ws.send(b);
}
const model = {
  get: (key) => state[key],
  set: (key, value) => { state[key] = value; dirty[key] = value; emit(`change:${key}`); },
  save_changes: () => { post({ method: "update", state: dirty, buffer_paths: [] }); dirty = {}; },
  on: (name, cb) => listeners.set(name, [...(listeners.get(name) || []), cb]),
  off: (name, cb) => listeners.set(name, (listeners.get(name) || []).filter((f) => f !== cb)),
  send: (content, callbacks, buffers) => post({ method: "custom", content }, buffers || []),
};
function dispatch({ data, buffers }) {
  if (data.method === "update") {
    putBuffers(data.state, data.buffer_paths || [], buffers);
    Object.assign(state, data.state);
    if (!rendered) {
      rendered = true;
      widget.render({ model, el: document.getElementById("out") });
      window.seemReady = true;
      return;
    }
    for (const key of Object.keys(data.state)) emit(`change:${key}`);
  } else if (data.method === "custom") {
    emit("msg:custom", data.content, buffers.map((b) => new DataView(b)));
  }
}
ws.onmessage = (event) => {
  if (typeof event.data === "string") {
    frame = { ...JSON.parse(event.data), buffers: [] };
  } else {
    frame.buffers.push(event.data);
  }
  if (frame && frame.buffers.length === frame.nbuf) {
    const done = frame;
    frame = null;
    dispatch(done);
  }
};
</script></body></html>
"""


class _Socket(tornado.websocket.WebSocketHandler):
    def initialize(self, bridge: WidgetBridge) -> None:
        self.bridge = bridge
        self.frame: dict[str, Any] | None = None
        self.buffers: list[bytes] = []

    def open(self, *args: str, **kwargs: str) -> None:
        self.bridge.connected(self)

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.frame, self.buffers = json.loads(message), []
        else:
            self.buffers.append(message)
        if self.frame is not None and len(self.buffers) == self.frame["nbuf"]:
            frame, buffers = self.frame, self.buffers
            self.frame = None
            self.bridge.received(frame["data"], buffers)


class _Page(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(PAGE)


class _Comm:
    """Stands in for the widget's Jupyter comm: what ipywidgets sends goes to the socket."""

    def __init__(self, bridge: WidgetBridge) -> None:
        self.bridge = bridge
        self.comm_id = "harness"

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.bridge.push(data, list(buffers or []))

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        pass


class WidgetBridge:
    """Serves the harness page on 127.0.0.1 and connects one widget to one browser page."""

    def __init__(self, widget: SeemWidget) -> None:
        self.widget = widget
        self.socket: _Socket | None = None
        self.errors: list[str] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True, name="widget-bridge")
        self.port = 0

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the harness server did not start")
        self.widget.comm = _Comm(self)
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        app = tornado.web.Application(
            [
                (r"/", _Page),
                (r"/ws", _Socket, {"bridge": self}),
                (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}),
            ]
        )
        server = tornado.httpserver.HTTPServer(app)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._ready.set()
        loop.run_forever()
        server.stop()
        loop.close()

    # --- Python -> browser ---

    def connected(self, socket: _Socket) -> None:
        self.socket = socket
        state, paths, buffers = _remove_buffers(self.widget.get_state())
        self._write({"method": "update", "state": state, "buffer_paths": paths}, buffers)

    def push(self, data: Any, buffers: list[Any]) -> None:
        assert self._loop is not None
        payload = [bytes(b) for b in buffers]
        self._loop.call_soon_threadsafe(self._write, data, payload)

    def _write(self, data: Any, buffers: list[Any]) -> None:
        if self.socket is None:
            return
        self.socket.write_message(json.dumps({"data": data, "nbuf": len(buffers)}))
        for buffer in buffers:
            self.socket.write_message(bytes(buffer), binary=True)

    # --- browser -> Python ---

    def received(self, data: dict[str, Any], buffers: list[bytes]) -> None:
        try:
            msg = {"content": {"data": data}, "buffers": [memoryview(b) for b in buffers]}
            self.widget._handle_msg(msg)
        except Exception as exc:  # _handle_msg logs; keep a record for the test
            self.errors.append(f"{type(exc).__name__}: {exc}")
