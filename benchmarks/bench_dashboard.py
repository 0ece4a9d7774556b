"""The dashboard in headless chromium: page load to the first paint of a 20-service table, a
state change to its row updating, and the log view under a service printing 10,000 lines a
second for 10 s.

    python benchmarks/bench_dashboard.py [--runs 5] [--lines-per-second 10000] [--seconds 10]

Needs Debian's chromium and Playwright (the test extra); prints a message and exits 0 without
them. A real `a3s up -d` stack behind the real shared proxy, in temporary folders. Reference,
in the same run: fetching the page's HTML alone (no browser). The bars (issue 16): the page
never falls behind the log by more than 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
CHATTY = """
import sys, time
rate = int(sys.argv[1])
n = 0
start = time.time()
while True:
    now = time.time()
    target = int((now - start) * rate)
    out = []
    while n < target:
        out.append(f"line {n} t={now:.3f}")
        n += 1
    if out:
        sys.stdout.write("\\n".join(out) + "\\n"); sys.stdout.flush()
    time.sleep(0.01)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def a3s(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "a3s_dev", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines-per-second", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        print("bench_dashboard: needs chromium and playwright; skipped")
        return 0
    with tempfile.TemporaryDirectory(prefix="a3s-bench-") as tmp:
        folder = Path(tmp) / "shop"
        folder.mkdir()
        (folder / "server.py").write_text(SERVICE)
        (folder / "chatty.py").write_text(CHATTY)
        blocks = ['dev { name = "shop" }']
        for i in range(19):
            deps = f'\n  depends_on = ["s{i - 1}"]' if i % 4 else ""
            blocks.append(f'service "s{i}" {{\n  cmd = "exec {sys.executable} server.py"\n  port = "auto"{deps}\n}}')
        blocks.append(f'service "chatty" {{\n  cmd = "exec {sys.executable} chatty.py {args.lines_per_second}"\n}}')
        (folder / "A3sfile.hcl").write_text("\n".join(blocks) + "\n")
        proxy = free_port()
        env = {**os.environ, "A3S_PROXY_PORT": str(proxy), "XDG_RUNTIME_DIR": tmp, "XDG_DATA_HOME": tmp, "NO_COLOR": "1"}
        up = a3s(folder, env, "up", "-d")
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            html = []
            for _ in range(args.runs):
                t = time.perf_counter()
                conn = http.client.HTTPConnection("127.0.0.1", proxy, timeout=30)
                conn.request("GET", "/", headers={"Host": f"a3s.localhost:{proxy}"})
                conn.getresponse().read()
                conn.close()
                html.append(time.perf_counter() - t)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                paint, rows = [], []
                for _ in range(args.runs):
                    page = browser.new_page()
                    page.goto(f"http://a3s.localhost:{proxy}/", wait_until="load")
                    assert page.locator("tr.service").count() == 20
                    fcp = page.evaluate(
                        "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
                    )
                    paint.append(fcp / 1000)
                    page.close()
                page = browser.new_page()
                page.goto(f"http://a3s.localhost:{proxy}/")
                page.wait_for_selector("#live.on")
                page.evaluate("""() => {
                    window.__changes = [];
                    new MutationObserver(() => {
                        const t = document.querySelector('tr.service[data-service="s3"] td.state').innerText;
                        window.__changes.push([t, Date.now()]);
                    }).observe(document.querySelector('tr.service[data-service="s3"] td.state'),
                               {childList: true, subtree: true, characterData: true});
                }""")
                for _ in range(args.runs):
                    for verb, state in (("down", "stopped"), ("up", "running")):
                        page.evaluate("window.__changes = []")
                        t0 = time.time()
                        a3s(folder, env, verb, "s3", *(["--no-deps"] if verb == "up" else []))
                        page.wait_for_timeout(50)
                        for _ in range(200):
                            seen = [c for c in page.evaluate("window.__changes") if c[0] == state]
                            if seen:
                                break
                            page.wait_for_timeout(20)
                        rows.append(seen[0][1] / 1000 - t0 if seen else float("nan"))
                # the log view under a flood
                page.locator('tr.service[data-service="chatty"] button.logs').click()
                page.wait_for_selector("#logs:not([hidden])")
                lags = []
                end = time.time() + args.seconds
                while time.time() < end:
                    page.wait_for_timeout(1000)
                    last = page.evaluate("document.querySelector('#log').lastElementChild?.innerText ?? ''")
                    if "t=" in last:
                        lags.append(time.time() - float(last.rsplit("t=", 1)[1]))
                kept = page.evaluate("document.querySelectorAll('#log .line').length")
                browser.close()
        finally:
            a3s(folder, env, "down")
            subprocess.run([sys.executable, "-m", "a3s_dev", "proxy", "stop", "--port", str(proxy)], env=env,
                           capture_output=True, timeout=30, check=False)

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"

    print(f"{args.runs} runs, 20 services, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"the page's HTML alone, no browser (reference)   {ms(html)}")
    print(f"navigation -> first contentful paint            {ms(paint)}")
    print(f"a3s down/up -> the row shows it (incl. the CLI)  {ms(rows)}")
    print(f"log view at {args.lines_per_second}/s for {args.seconds}s: behind by {ms(lags)} "
          f"(bar 1 s), {kept} lines kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
