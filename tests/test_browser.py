"""The outputs play in a real browser: headless Chromium opens each clip in an HTML <video>
element (served over HTTP, as a page would load it), seeks to 5 s and 10 s, draws the frame to a
canvas and reads the barcode of the source frame it shows, and checks the duration and the sound.

Chromium is driven over its DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so no driver package is needed. The test
skips with a reason where no Chromium is installed (Debian: apt-get install chromium)."""
from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import queue
import shutil
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from synthetic import read_code

FAST = ["--model", "flow", "--preset", "veryfast", "--time-indent", "0", "--quiet"]
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--remote-debugging-pipe"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges, which a <video> element uses to seek."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        header = self.headers.get("Range")
        if not path.is_file() or not header or not header.startswith("bytes="):
            return super().send_head()
        size = path.stat().st_size
        first, _, last = header[6:].partition("-")
        start = int(first) if first else max(0, size - int(last))
        end = min(int(last), size - 1) if first and last else size - 1
        f = path.open("rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 16))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, profile: Path):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # Out of the way of 3 and 4, which the redirections below hand to the browser.
        to_child, from_child = (self._high(fd) for fd in (to_child, from_child))
        args = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-', *args],
            pass_fds=(to_child, from_child), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._replies: dict[int, queue.Queue] = {}
        self._next = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._reader, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    @staticmethod
    def _high(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return moved

    def _reader(self):
        buffer = b""
        while True:
            data = os.read(self._read, 1 << 16)
            if not data:
                for q in self._replies.values():
                    q.put({"error": {"message": "the browser closed"}})
                return
            buffer += data
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                reply = json.loads(message)
                if "id" in reply and reply["id"] in self._replies:
                    self._replies[reply["id"]].put(reply)

    def call(self, method, session=None, timeout=60, **params):
        with self._lock:
            self._next += 1
            ident = self._next
            self._replies[ident] = queue.Queue()
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        reply = self._replies[ident].get(timeout=timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def evaluate(self, expression: str, timeout=60):
        result = self.call("Runtime.evaluate", session=self.session, timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("exception", {}).get("description", result))
        return result["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        os.close(self._write)


PROBE = """
(async () => {
  const video = document.createElement('video');
  video.muted = true; video.preload = 'auto';
  document.body.appendChild(video);
  const once = (name) => new Promise((ok, fail) => {
    video.addEventListener(name, ok, {once: true});
    video.addEventListener('error', () => fail(new Error('media error ' + (video.error && video.error.code)
                                                          + ' ' + (video.error && video.error.message))), {once: true});
  });
  video.src = %(url)s;
  await once('loadeddata');
  await video.play();                       // a moment of playback, so the audio is decoded
  await new Promise(ok => setTimeout(ok, 700));
  video.pause();
  const shots = [];
  for (const t of %(times)s) {
    const seeked = once('seeked');
    video.currentTime = t;
    await seeked;
    await new Promise(ok => requestAnimationFrame(() => requestAnimationFrame(ok)));
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext('2d').drawImage(video, 0, 0);
    shots.push(canvas.toDataURL('image/png'));
  }
  return {duration: video.duration, width: video.videoWidth, height: video.videoHeight,
          audioBytes: video.webkitAudioDecodedByteCount, videoBytes: video.webkitVideoDecodedByteCount,
          canPlay: video.canPlayType('video/mp4; codecs="avc1.640028, mp4a.40.2"'), shots};
})()
"""


def decode_png(url: str) -> np.ndarray:
    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "index.html").write_text("<!doctype html><html><body></body></html>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    b = Browser(tmp_path_factory.mktemp("profile"))
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        b.call("Page.enable", session=b.session)
        b.call("Page.navigate", session=b.session, url=base + "index.html")
        b.evaluate("new Promise(ok => document.readyState === 'complete' ? ok() : addEventListener('load', ok))")
        b.site, b.base = site, base
        yield b
    finally:
        b.close()
        server.shutdown()


CASES = {
    "splice-with-audio": dict(rate=Fraction(25), size=(320, 240), audio=True, rotation=0, pix_fmt="yuv420p"),
    "odd-size": dict(rate=Fraction(25), size=(321, 241), audio=False, rotation=0, pix_fmt="yuv444p"),
    "rotated": dict(rate=Fraction(25), size=(320, 240), audio=True, rotation=90, pix_fmt="yuv420p"),
    "29.97-fps": dict(rate=Fraction(30000, 1001), size=(320, 240), audio=True, rotation=0, pix_fmt="yuv420p"),
    # Chromium decodes 10-bit H.264 in software: an independent decoder's view of --pix-fmt yuv420p10le.
    "10-bit": dict(rate=Fraction(25), size=(320, 240), audio=True, rotation=0, pix_fmt="yuv420p10le"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_plays_in_chromium(browser, video_factory, run_cli, case):
    spec = CASES[case]
    rate = spec["rate"]
    frames = int(17 * rate)
    src = video_factory(frames=frames, **spec)
    out = browser.site / f"{case}.mp4"
    r = run_cli("--input", src, "--output", out, "--frame-a", round(5 * rate) + 6,
                "--frame-b", round(5 * rate) + 6 + round(6 * rate), *FAST,
                *(["--pix-fmt", "yuv420p10le"] if spec["pix_fmt"] == "yuv420p10le" else []))
    assert r.returncode == 0, r.stderr
    assert r.report["pix_fmt"] == ("yuv420p10le" if spec["pix_fmt"] == "yuv420p10le" else "yuv420p")
    a, b = r.report["a"]["index"], r.report["b"]["index"]
    # Seek into the middle of output frames n and 2n (at 5 s and 10 s; 5.005 s and 10.010 s at 29.97 fps).
    times = [r.report["a"]["output_time"] + 0.5 / float(rate), r.report["b"]["output_time"] + 0.5 / float(rate)]
    info = browser.evaluate(PROBE % {"url": json.dumps(browser.base + out.name), "times": json.dumps(times)},
                            timeout=120)
    assert info["canPlay"] in ("probably", "maybe")
    assert abs(info["duration"] - 15.0) <= 1.5 / float(rate), info["duration"]
    w, h = spec["size"]
    shown = (h + h % 2, w + w % 2) if spec["rotation"] in (90, 270) else (w + w % 2, h + h % 2)
    assert (info["width"], info["height"]) == shown
    codes = []
    for shot in info["shots"]:
        rgb = decode_png(shot)
        if spec["rotation"]:
            rgb = np.rot90(rgb, k=-spec["rotation"] // 90)   # the browser shows it upright
        codes.append(read_code(rgb[:h, :w]))
    assert codes == [a, b], (codes, a, b)
    assert info["videoBytes"] > 0
    if spec["audio"]:
        assert info["audioBytes"] > 0, info
    else:
        assert not info["audioBytes"]
