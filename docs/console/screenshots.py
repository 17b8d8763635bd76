"""Take the console's screenshots kept in docs/console/: a daemon on the repository's demo
configuration (in a temporary copy, with its own SQLite file), a few contacts and deals written
through the API, then each page in headless Chromium saved as <page>.png.

    python docs/console/screenshots.py docs/console

Needs the test extras (selenium) and Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from flowctl.testing import Daemon, wait_for

ROOT = Path(__file__).resolve().parents[2]

CONTACTS = {
    "1": {"full_name": "Nguyễn Văn An", "phone": "0901234567", "email": "an@example.com", "owner": "lan"},
    "2": {"full_name": "Trần Thị Mai", "phone": "0907654321", "segment": "vip", "owner": "minh"},
}
DEALS = {  # id: (fields, stage)
    "7": ({"title": "Bộ sofa phòng khách", "contact_name": "Nguyễn Văn An", "amount": 15000000, "owner": "lan"}, "new"),
    "8": ({"title": "Bàn ăn gỗ sồi 6 ghế", "contact_name": "Trần Thị Mai", "amount": 22000000, "owner": "minh"}, "new"),
    "9": ({"title": "Tủ quần áo 4 cánh", "contact_name": "Lê Văn Hùng", "amount": 9500000, "owner": "lan"}, "new"),
    "10": ({"title": "Giường ngủ 1m8", "contact_name": "Phạm Thu Hà", "amount": 12500000, "owner": "minh"}, "new"),
    "11": ({"title": "Kệ tivi + bàn trà", "contact_name": "Đỗ Minh Quân", "amount": 7800000, "owner": "lan"}, "new"),
    "12": ({"title": "Sofa góc chữ L", "contact_name": "Vũ Thị Lan", "amount": 31000000, "owner": "minh"}, "new"),
}
MOVES = {"9": "proposal", "10": "proposal", "11": "won", "12": "lost"}
DELETED = {"13": ({"title": "Ghế thư giãn", "contact_name": "Hoàng Văn Nam", "amount": 4200000, "owner": "lan"}, "new")}
PAGES = {  # file name: path
    "boards": "/ui/boards",
    "board": "/ui/boards/demo-deals",
    "record": "/ui/records/deal/9",  # in proposal: the quote email and its note
    "pipeline": "/ui/graphs/demo-deals",
    "flow": "/ui/graphs/welcome-contact",
    "runs": "/ui/runs",
    "outbox": "/ui/outbox",
    "recycle-bin": "/ui/recycle-bin?object=deal",
    "care": "/ui/care",
    "deployments": "/ui/deployments",
    "health": "/ui/health",
}


def demo_copy(where: Path) -> Path:
    """The demo configuration of the repository root, copied to ``where``."""
    (where / "config").mkdir()
    shutil.copy(ROOT / "flowctl.yaml", where / "config" / "flowctl.yaml")
    for folder in ("flows", "templates"):
        shutil.copytree(ROOT / folder, where / "config" / folder)
    return where / "config"


def fill(daemon: Daemon) -> None:
    for id, fields in CONTACTS.items():
        assert daemon.put("contact", id, fields).status_code == 202
    for id, (fields, stage) in {**DEALS, **DELETED}.items():
        email = {"email": "lan@example.com", "phone": "0901234567"}
        assert daemon.put("deal", id, {**email, **fields}, stage=stage).status_code == 202
    for id, stage in MOVES.items():
        answer = httpx.post(f"{daemon.url}/v1/records/deal/{id}/stage", json={"stage": stage}, timeout=10)
        assert answer.status_code == 202, answer.text
    for id in DELETED:
        assert daemon.delete("deal", id).status_code == 202
    httpx.post(f"{daemon.url}/v1/events", json={"event": "deal.signed", "object": "deal", "id": "8"}, timeout=10)

    def settled() -> bool:
        return all(not daemon.get(f"/v1/records/deal/{id}").json().get("pending") for id in DEALS)

    wait_for(settled, 30, "the demo records processed")


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,900")
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    return webdriver.Chrome(service=service, options=options)


def shoot(driver: webdriver.Chrome, url: str, out: Path) -> None:
    """The whole page (up to 1,600 px high), not only the window."""
    driver.get(url)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    metrics = {"width": 1400, "height": min(max(height, 500), 1600), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    out.write_bytes(driver.get_screenshot_as_png())
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        config = demo_copy(Path(temp))
        with Daemon(config, f"sqlite:///{Path(temp) / 'flowctl.db'}").start(timeout=60) as daemon:
            fill(daemon)
            driver = browser()
            try:
                for name, path in PAGES.items():
                    shoot(driver, daemon.url + path, out / f"{name}.png")
                driver.get(daemon.url + "/ui/runs?automation=flow:welcome-contact")
                first = driver.find_element("css selector", "a.run-link").get_attribute("href")
                shoot(driver, str(first), out / "run.png")
                driver.get(f"{daemon.url}/ui/lang?to=vi&next=/ui/boards/demo-deals")
                shoot(driver, daemon.url + "/ui/boards/demo-deals", out / "board-vi.png")
            finally:
                driver.quit()
    for png in sorted(out.glob("*.png")):
        print(f"{png} {png.stat().st_size // 1024} kB")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
