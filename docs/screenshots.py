"""Make the README's screenshots: docs/viewer-job.png, docs/viewer-log.png and docs/viewer-merged.png.

    .venv/bin/python docs/screenshots.py      # needs Debian's chromium (and fonts-noto-cjk for the Chinese line)

Runs `jobtail serve` (local executor) on a temporary data directory, runs examples/train.py on
4 workers (rank 2 fails in the last epoch), and photographs the job's page, rank 2's log and the
merged view in Chromium.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support.serve import ServeProcess  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="jobtail-shots-"))
    serve = ServeProcess(root / "data", "--executor", "local", "--executor-shared-dirs", str(ROOT))  # examples/ in view
    (root / "data").mkdir()
    serve.start()
    try:
        credentials = json.loads(serve.admin_credentials().read_text())
        project = credentials["project_id"]
        r = httpx.post(serve.url + "/v3/auth/tokens", json={"auth": {"identity": {"methods": ["password"], "password": {
            "user": {"name": credentials["user"], "password": credentials["password"]}}}}})  # the first start's
        token = r.headers["x-subject-token"]
        headers = {"X-Auth-Token": token}
        body = {"kind": "job", "metadata": {"name": "resnet-demo"},
                "algorithm": {"command": "python3 examples/train.py --epochs 3 --steps 40 --sleep 0.01 --fail-at 3 --fail-rank 2",
                              "working_dir": str(ROOT)},
                "spec": {"resource": {"node_count": 4}}}
        job = httpx.post(f"{serve.url}/v2/{project}/training-jobs", json=body, headers=headers).json()["metadata"]["id"]
        for _ in range(300):
            phase = httpx.get(f"{serve.url}/v2/{project}/training-jobs/{job}", headers=headers).json()["status"]["phase"]
            if phase in ("Completed", "Failed"):
                break
            time.sleep(0.2)
        projects = httpx.get(serve.url + "/v3/auth/projects", headers=headers).json()["projects"]
        session = {"token": token, "user": "admin", "projects": projects}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.add_init_script(f"sessionStorage.setItem('jobtail.session', {json.dumps(json.dumps(session))})")
            page.goto(f"{serve.url}/p/{project}/jobs/{job}")
            page.wait_for_selector(".events-table tbody tr")
            page.screenshot(path=str(ROOT / "docs" / "viewer-job.png"))
            page.goto(f"{serve.url}/p/{project}/jobs/{job}/logs/worker-2")
            page.wait_for_selector(".status .mode.ended")
            page.get_by_role("button", name="Time").click()
            page.locator("input.search").fill("epoch")
            page.locator("input.search").press("Enter")
            page.wait_for_selector(".results .matches li.current")
            page.screenshot(path=str(ROOT / "docs" / "viewer-log.png"))
            page.get_by_role("button", name="Time").click()  # leave the preference as it was
            page.goto(f"{serve.url}/p/{project}/jobs/{job}/logs")
            page.wait_for_selector(".status .mode.ended")
            fold = page.locator(".vp .row button.fold").first
            row = int(fold.get_attribute("data-fold") or 0) + 1
            fold.click()
            page.locator("input.jump").fill(str(row))  # the opened fold in the middle of the window
            page.locator("input.jump").press("Enter")
            page.wait_for_timeout(300)
            page.screenshot(path=str(ROOT / "docs" / "viewer-merged.png"))
            browser.close()
        for name in ("viewer-job.png", "viewer-log.png", "viewer-merged.png"):
            subprocess.run(["optipng", "-quiet", "-o2", str(ROOT / "docs" / name)], check=False)
    finally:
        serve.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
