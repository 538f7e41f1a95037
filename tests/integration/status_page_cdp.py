#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (standard library only).

Used by tests/integration/test_status_page.cc: the page under test keeps an
EventSource open, so `chromium --virtual-time-budget --dump-dom` never
finishes (virtual time waits for the never-ending request); a real browser
tab that the test queries while the server changes under it does.

  status_page_cdp.py [--chromium BIN] [--size 1280,900] [--preload JS] URL
      Opens URL in a new headless Chromium, prints "ready", then reads
      commands from stdin, one per line, and answers each with one line of
      JSON on stdout:
        eval <JavaScript expression>  -> {"ok":true,"value":<result>}
        screenshot <path>             -> {"ok":true,"bytes":N} (PNG of the viewport)
        quit                          -> (exits, closing the browser)
      Errors: {"ok":false,"error":"..."}.

  status_page_cdp.py --screenshot PATH [--wait-snapshots N] URL
      One shot: waits until the page's #updated counter reaches N (default 5),
      saves a PNG of the viewport and exits (0 on success).
"""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


class WebSocket:
    """A minimal RFC 6455 client: text frames, client-side masking."""

    def __init__(self, url, timeout=30):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError("bad ws url " + url)
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError("websocket handshake refused: " + head.decode(errors="replace"))

    def send(self, text):
        payload = text.encode()
        n = len(payload)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._need(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._need(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._need(8))[0]
            mask = self._need(4) if b1 & 0x80 else None
            data = self._need(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            op = b0 & 0x0F
            if op == 8:
                raise ConnectionError("websocket closed by peer")
            if op in (9, 10):  # ping/pong: Chromium does not ping; ignore
                continue
            if op in (0, 1, 2):
                message += data
                if b0 & 0x80:
                    return message.decode()


class Browser:
    def __init__(self, chromium, size, timeout=60):
        self.profile = tempfile.mkdtemp(prefix="pf-chromium-")
        args = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--mute-audio",
                "--hide-scrollbars", f"--window-size={size}", "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1", f"--user-data-dir={self.profile}",
                "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        ws_url = None
        self.stderr_tail = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail = (self.stderr_tail + [text])[-20:]
            m = re.search(r"DevTools listening on (ws://\S+)", text)
            if m:
                ws_url = m.group(1)
                break
        if not ws_url:
            self.close()
            raise RuntimeError("chromium did not report a DevTools port:\n" + "\n".join(self.stderr_tail))
        # Keep draining stderr so chromium never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        port = int(re.match(r"ws://[^:]+:(\d+)/", ws_url).group(1))
        page_ws = None
        while time.time() < deadline and not page_ws:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            for t in targets:
                if t.get("type") == "page" and t.get("webSocketDebuggerUrl"):
                    page_ws = t["webSocketDebuggerUrl"]
                    break
            if not page_ws:
                time.sleep(0.1)
        if not page_ws:
            self.close()
            raise RuntimeError("chromium has no page target")
        self.ws = WebSocket(page_ws)
        self.next_id = 0

    def call(self, method, params=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        self.ws.sock.settimeout(timeout)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def navigate(self, url, size, preload=None):
        w, h = (int(x) for x in size.split(","))
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 700})
        self.call("Page.enable")
        if preload:
            self.call("Page.addScriptToEvaluateOnNewDocument", {"source": preload})
        self.call("Page.navigate", {"url": url})
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.eval("document.readyState") == "complete":
                return
            time.sleep(0.05)
        raise RuntimeError("page did not load: " + url)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(d.get("exception", {}).get("description") or d.get("text", "exception"))
        return r.get("result", {}).get("value")

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", {"format": "png"})
        data = base64.b64decode(r["data"])
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    def close(self):
        try:
            os.killpg(self.proc.pid, 9)  # chromium's own session: its helpers go too
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)


def reply(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--size", default="1280,900")
    ap.add_argument("--screenshot")
    ap.add_argument("--wait-snapshots", type=int, default=5)
    ap.add_argument("--preload", help="JavaScript run in the page before its own scripts")
    a = ap.parse_args()
    sys.stdout.reconfigure(encoding="utf-8")
    try:
        b = Browser(a.chromium, a.size)
    except Exception as e:  # noqa: BLE001 - reported to the caller as one line
        reply({"ok": False, "error": f"starting chromium: {e}"})
        return 1
    try:
        b.navigate(a.url, a.size, a.preload)
        if a.screenshot:
            deadline = time.time() + 30 + 2 * a.wait_snapshots
            while time.time() < deadline:
                n = b.eval("+document.getElementById('updated').dataset.value")
                if n and n >= a.wait_snapshots:
                    break
                time.sleep(0.2)
            n = b.screenshot(a.screenshot)
            print(f"{a.screenshot}: {n} bytes")
            return 0
        reply({"ok": True, "ready": True})
        for line in sys.stdin:
            line = line.rstrip("\n")
            cmd, _, arg = line.partition(" ")
            try:
                if cmd == "eval":
                    reply({"ok": True, "value": b.eval(arg)})
                elif cmd == "screenshot":
                    reply({"ok": True, "bytes": b.screenshot(arg)})
                elif cmd == "quit":
                    break
                else:
                    reply({"ok": False, "error": "unknown command " + cmd})
            except Exception as e:  # noqa: BLE001
                reply({"ok": False, "error": str(e)})
        return 0
    except Exception as e:  # noqa: BLE001
        reply({"ok": False, "error": str(e)})
        return 1
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
