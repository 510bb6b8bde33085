"""Join time in Chromium: click → first remote video frame, our room vs. a bare Janus echotest (as root).

    .venv/bin/python bench/join_time.py --joins 20 [--budget 600]

Lab from bench/lab_app.py (namespace + Janus + the real app in a child process, the
briefing live). Debian's Chromium with a fake camera and microphone (Playwright): the host (dc-tw)
joins first and stays. Then, alternately, ``--joins`` times each:

* room — a site logs in (a fresh browser context), opens ``/meetings/<id>/room``, waits until "Vào
  phòng họp" is enabled (devices checked), then clicks it; stop = first frame presented by the host's
  video (``requestVideoFrameCallback`` on ``#host-video``);
* echotest — a bare page (served on loopback by this script) that has already called getUserMedia;
  the click opens a WebSocket to the same Janus, creates a session, attaches ``janus.plugin.echotest``,
  sends its offer (after ICE gathering, no trickle) and shows the echoed video; stop = its first frame.

Both clocks are the page's ``performance.now()``. Prints p50/p95 of each and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab_app import PASSWORD, _serve, loadavg

from giaoban.lab.janus_ns import JanusNamespace
from giaoban.lab.netns import NetLab, missing_requirements

CHROMIUM = Path(os.environ.get("GIAOBAN_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]

ECHO_PAGE = """<!doctype html><meta charset="utf-8"><title>echotest</title>
<button id="join">join</button><video id="v" autoplay playsinline muted></video>
<script>
const P = new URLSearchParams(location.search);
window.__bench = {};
let local = null;
navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 360}})
  .then((s) => { local = s; window.__bench.ready = true; });
document.getElementById("join").addEventListener("click", async () => {
  window.__bench.t0 = performance.now();
  const v = document.getElementById("v");
  v.requestVideoFrameCallback(() => { window.__bench.t1 = performance.now(); });
  const ws = new WebSocket(P.get("ws"), "janus-protocol");
  window.__bench.ws = ws;
  const waiting = {};
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.janus === "ack" || !m.transaction || !waiting[m.transaction]) return;
    waiting[m.transaction](m);
    delete waiting[m.transaction];
  };
  await new Promise((r) => { ws.onopen = r; });
  const send = (msg) => new Promise((r) => {
    const t = Math.random().toString(36).slice(2);
    waiting[t] = r;
    ws.send(JSON.stringify({...msg, transaction: t, apisecret: P.get("secret")}));
  });
  const created = await send({janus: "create"});
  if (!created.data) { window.__bench.error = JSON.stringify(created); return; }
  const sid = created.data.id;
  const hid = (await send({janus: "attach", session_id: sid, plugin: "janus.plugin.echotest"})).data.id;
  const pc = new RTCPeerConnection({iceServers: []});
  window.__bench.pc = pc;
  local.getTracks().forEach((t) => pc.addTrack(t, local));
  pc.ontrack = (e) => { if (e.track.kind === "video") v.srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => {
    if (pc.iceGatheringState === "complete") return r();
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") r(); });
  });
  const ev = await send({janus: "message", session_id: sid, handle_id: hid, body: {audio: true, video: true},
                         jsep: {type: "offer", sdp: pc.localDescription.sdp}});
  if (ev.jsep) await pc.setRemoteDescription(ev.jsep);
  else window.__bench.error = JSON.stringify(ev);
});
</script>
"""

ROOM_HOOK = """() => {
  window.__bench = {};
  document.getElementById("join").addEventListener("click", () => { window.__bench.t0 = performance.now(); },
                                                   {capture: true});
  document.getElementById("host-video").requestVideoFrameCallback(() => {
    window.__bench.t1 = performance.now();
  });
}"""

ELAPSED = "() => (window.__bench && window.__bench.t1 && window.__bench.t0) ? window.__bench.t1 - window.__bench.t0 : null"


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = ECHO_PAGE.encode() if self.path.startswith("/?") else b""
        with contextlib.suppress(OSError):  # the browser may drop a connection (favicon)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def wait_value(page: Any, script: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if value:
            return value
        time.sleep(0.05)
    return None


def login(browser: Any, base: str, username: str, path: str) -> tuple[Any, Any]:
    context = browser.new_context(base_url=base, locale="vi-VN", viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(path)
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(lambda url: url.endswith(path))
    return context, page


def room_join(browser: Any, base: str, username: str, meeting: int, timeout: float) -> float | None:
    context, page = login(browser, base, username, f"/meetings/{meeting}/room")
    try:
        page.wait_for_selector("#join:not([disabled])", timeout=timeout * 1000)
        page.evaluate(ROOM_HOOK)
        page.click("#join")
        value = wait_value(page, ELAPSED, timeout)
        return float(value) if value else None
    finally:
        context.close()


def echo_join(browser: Any, url: str, timeout: float) -> float | None:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(url)
        if not wait_value(page, "() => window.__bench.ready", timeout):
            return None
        page.click("#join")
        value = wait_value(page, ELAPSED, timeout)
        if value is None:
            state = page.evaluate(
                "() => [window.__bench.error, window.__bench.ws && window.__bench.ws.readyState,"
                " window.__bench.pc && window.__bench.pc.connectionState]"
            )
            print(f"echotest failed: {state} {problems[:3]}", flush=True)
        return float(value) if value else None
    finally:
        context.close()


def run(info: dict[str, Any], args: argparse.Namespace, echo_url: str, out: dict[str, list[float]]) -> None:
    from playwright.sync_api import sync_playwright

    base, meeting = info["base"], info["meeting"]
    users = [f"dc-{c.lower()}" for c, _ in info["sites"] if c != "TW"]
    deadline = time.monotonic() + args.budget
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            host_ctx, host = login(browser, base, "dc-tw", f"/meetings/{meeting}/room")
            host.wait_for_selector("#join:not([disabled])", timeout=30_000)
            host.click("#join")
            time.sleep(3)  # the host's PeerConnection up before sites join
            for n in range(args.joins):
                if time.monotonic() > deadline:
                    print("time budget reached", flush=True)
                    break
                out["loads"].append(float(loadavg()))
                r = room_join(browser, base, users[n % len(users)], meeting, 20)
                e = echo_join(browser, echo_url, 20)
                print(f"join {n + 1:3d}: room {r if r is None else round(r, 1)} ms, echotest "
                      f"{e if e is None else round(e, 1)} ms", flush=True)  # fmt: skip
                if r is not None:
                    out["room"].append(r)
                if e is not None:
                    out["echo"].append(e)
            host_ctx.close()
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for the joins")
    args = parser.parse_args()
    reason = missing_requirements() or (None if shutil.which("janus") else "janus is not installed")
    if reason or not CHROMIUM.exists():
        print(f"cannot run: {reason or f'no Chromium at {CHROMIUM}'}", file=sys.stderr)
        return 2
    out: dict[str, list[float]] = {"room": [], "echo": [], "loads": []}
    failure: str | None = None
    work = Path(tempfile.mkdtemp(prefix="gb-bench-join-"))
    lab = NetLab("bench")
    child: Any = None
    server: http.server.ThreadingHTTPServer | None = None
    parent_end, child_end = multiprocessing.Pipe()
    try:
        name = lab.netns("janus")
        ns = JanusNamespace(name=name, link=lab.link(None, name))
        child = multiprocessing.get_context("fork").Process(
            target=_serve, args=(child_end, ns, work, True, ("echotest",)), daemon=True
        )
        child.start()
        if not parent_end.poll(120):
            raise TimeoutError("the app did not start within 120 s")
        info = parent_end.recv()
        if "error" in info:
            raise RuntimeError(f"the app failed: {info['error']}")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        echo_url = (
            f"http://127.0.0.1:{server.server_address[1]}/?ws={quote(info['janus_url'])}"
            f"&secret={quote(info['api_secret'])}"
        )
        try:
            run(info, args, echo_url, out)
        except Exception as exc:
            failure = repr(exc)
    finally:
        if server is not None:
            server.shutdown()
        with contextlib.suppress(Exception):
            parent_end.send("stop")
        if child is not None:
            child.join(60)
            if child.is_alive():
                child.terminate()
                child.join(10)
            if child.is_alive():
                child.kill()
        lab.close()
        shutil.rmtree(work, ignore_errors=True)

    print()
    loads = out["loads"]
    print(
        f"nproc {os.cpu_count()}, load average (1 min) {min(loads, default=0):.2f}–{max(loads, default=0):.2f}"
    )
    if failure:
        print(f"run stopped early: {failure}")
    print("| join, click → first remote video frame | p50 ms | p95 ms | max ms | joins |")
    print("|---|---|---|---|---|")
    for label, key in (("our room (#host-video)", "room"), ("bare Janus echotest", "echo")):
        v = out[key]
        row = f"{pct(v, 0.5):.0f} | {pct(v, 0.95):.0f} | {max(v):.0f}" if v else "– | – | –"
        print(f"| {label} | {row} | {len(v)}/{args.joins} |")
    if out["room"] and out["echo"]:
        print(
            f"ratio room/echotest: p50 {pct(out['room'], 0.5) / pct(out['echo'], 0.5):.2f}, "
            f"p95 {pct(out['room'], 0.95) / pct(out['echo'], 0.95):.2f} (goal ≤ 1.1)"
        )
    return 0 if failure is None and out["room"] else 1


if __name__ == "__main__":
    sys.exit(main())
