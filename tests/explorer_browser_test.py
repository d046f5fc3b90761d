"""`fedchain explorer` in headless Chromium against a live embedded network after a 2-round demo.

One demo (4 hospitals, hospital4 scaling its update by 8, 2 rounds, few training steps) and one explorer
process (started through the console script, --port 0, --report on the demo's report folder) serve every
test of this module. Selenium drives Debian's chromium through /usr/bin/chromedriver (no Selenium Manager
download). Checked: both rounds FINALIZED with the accepted/rejected sets of report.json and the ledger;
the decision grid equals report.json; a model downloaded by the browser hashes to the ledger's hash; the
audit page runs `audit verify` and shows OK; after the operator creates round 3 the rounds page shows it
without a reload (chaincode event -> server-sent event -> live.js). The module ends with round 3 OPEN, so
the live-update test runs last.

The browser is required when FEDCHAIN_REQUIRE_BROWSER=1 (CI, `make browser`): a missing chromium or
chromedriver then fails instead of skipping. FEDCHAIN_EXPLORER_SCREENSHOTS=DIR saves a PNG of each page
(the screenshot helper; docs/explorer/ was taken from a 5-round demo with it, see docs/explorer.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import find_free_port_base

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FEDCHAIN = str(Path(sys.executable).parent / "fedchain")
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REQUIRED = os.environ.get("FEDCHAIN_REQUIRE_BROWSER") == "1"
SCREENSHOTS = os.environ.get("FEDCHAIN_EXPLORER_SCREENSHOTS")


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        return f"{', '.join(missing)} missing: `make browser-deps` installs Debian's chromium and chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A kept embedded network after a 2-round demo: (network folder, report.json as a dict, report folder)."""
    from fedchain.netctl.embedded import EmbeddedNetwork

    why = _browser_missing()
    if why:  # before spending a demo on it
        if REQUIRED:
            pytest.fail(f"FEDCHAIN_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    root = tmp_path_factory.mktemp("explorer")
    net, rep = root / "net", root / "rep"
    cmd = [FEDCHAIN, "demo", "--hospitals", "4", "--rounds", "2", "--malicious", "1", "--attack", "scaling",
           "--attack-param", "factor=8", "--steps", "10", "--warmup-epochs", "1", "--network", str(net),
           "--base-port", str(find_free_port_base()), "--report-dir", str(rep), "--keep-network"]
    try:
        res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        yield net, json.loads((rep / "report.json").read_text()), rep
    finally:
        EmbeddedNetwork(net).down()


@pytest.fixture(scope="module")
def explorer(demo: Any) -> Any:
    """`fedchain explorer` as a user starts it; yields its base URL."""
    net, _, rep = demo
    proc = subprocess.Popen([FEDCHAIN, "explorer", "--network", str(net), "--port", "0", "--report", str(rep)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=net.parent)
    try:
        line = proc.stdout.readline()
        assert "fedchain explorer on http://127.0.0.1:" in line, line + proc.stderr.read()
        yield line.split(" on ", 1)[1].split()[0].rstrip("/")
    finally:
        proc.terminate()
        try:  # uvicorn shuts down gracefully, then re-raises SIGTERM (exit 143 in a shell)
            assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
            assert "Traceback" not in proc.stderr.read(), "the explorer logged an exception"
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture(scope="module")
def browser(explorer: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def ledger(net: Path, identity: str = "auditor") -> Any:
    from fedchain.fl_client import FLClient
    from fedchain.netconfig import load_network

    cfg = load_network(net)
    gw = cfg.connect(identity)
    return gw, FLClient(cfg.contract(gw))


def open_page(browser: Any, url: str) -> None:
    browser.get(url)
    assert "fedchain explorer" in browser.title, browser.page_source[:500]


def cells(browser: Any, selector: str, attribute: str) -> str:
    """An attribute of the element at `selector`, read again if live.js swapped the page's <main> meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            return browser.find_element(By.CSS_SELECTOR, selector).get_attribute(attribute)
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"{selector} kept changing")


def wait(browser: Any, seconds: float, condition: Any) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, seconds, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                  ).until(condition)


def screenshot(browser: Any, name: str) -> None:
    """Full-page PNG into FEDCHAIN_EXPLORER_SCREENSHOTS (no-op without it)."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    import base64

    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                               "clip": clip})
    (folder / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def test_rounds_page_shows_both_rounds_finalized(browser: Any, explorer: str, demo: Any) -> None:
    net, report, _ = demo
    open_page(browser, f"{explorer}/rounds")
    gw, fl = ledger(net)
    try:
        for r in report["rounds"]:
            rid = r["round"]
            row = f"#round-{rid}"
            assert cells(browser, row, "data-state") == "FINALIZED"
            accepted = cells(browser, f"{row} td.accepted", "data-hospitals").split()
            rejected = cells(browser, f"{row} td.rejected", "data-hospitals").split()
            assert sorted(accepted) == sorted(r["accepted"])
            assert sorted(rejected) == sorted(r["rejected"])
            final = fl.get_round(rid).finalized
            assert sorted(accepted) == sorted(final.accepted) and sorted(rejected) == sorted(final.rejected)
            text = cells(browser, f"{row} td.rejected", "textContent")
            for h, why in r["rejected"].items():
                assert f"{h} ({why})" in text  # the reason code is shown
        assert "hospital4" in report["rounds"][0]["rejected"]  # the demo's attacker was caught: a real rejected set
    finally:
        gw.close()
    screenshot(browser, "rounds")


def test_round_page_lists_updates_attestations_and_transactions(browser: Any, explorer: str, demo: Any) -> None:
    from selenium.webdriver.common.by import By

    _, report, _ = demo
    open_page(browser, f"{explorer}/rounds/1")
    assert cells(browser, "#round-summary", "data-state") == "FINALIZED"
    assert browser.find_element(By.ID, "model-hash").text == report["rounds"][0]["model_hash"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#updates tbody tr")) == 4
    assert len(browser.find_elements(By.CSS_SELECTOR, "#attestations tbody tr")) >= 2
    functions = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#round-transactions td:nth-child(3)")}
    assert {"CreateRound", "SubmitUpdate", "CloseRound", "AttestResult", "PublishModel"} <= functions
    screenshot(browser, "round")


def test_decision_grid_matches_the_report(browser: Any, explorer: str, demo: Any) -> None:
    from selenium.webdriver.common.by import By

    _, report, _ = demo
    open_page(browser, f"{explorer}/decisions")
    seen = 0
    for r in report["rounds"]:
        for cell in browser.find_elements(By.CSS_SELECTOR, f'#grid td[data-round="{r["round"]}"]'):
            hospital = cell.find_element(By.XPATH, "..").get_attribute("data-hospital")
            decision = cell.get_attribute("data-decision")
            if hospital in r["rejected"]:
                assert decision == "rejected" and cell.get_attribute("data-reason") == r["rejected"][hospital]
            elif hospital in r["accepted"]:
                assert decision == "accepted"
            else:
                assert decision == "none"
            assert ("cell-malicious" in cell.get_attribute("class")) == (hospital in r["malicious"])
            seen += 1
        acc = browser.find_element(By.CSS_SELECTOR, f'#accuracy tr[data-round="{r["round"]}"] td').text
        assert acc == f"{r['accuracy'] * 100:.1f}%"
    assert seen == 8  # 4 hospitals x 2 rounds
    for img in browser.find_elements(By.CSS_SELECTOR, "figure img"):
        assert img.get_attribute("alt")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
    screenshot(browser, "decisions")


def test_model_download_matches_the_ledger_hash(browser: Any, explorer: str, demo: Any) -> None:
    from selenium.webdriver.common.by import By

    net, report, _ = demo
    open_page(browser, f"{explorer}/models")
    items = browser.find_elements(By.CSS_SELECTOR, "#lineage > li")
    assert [i.get_attribute("data-round") for i in items] == ["0", "1", "2"]  # genesis -> round 1 -> round 2
    link = browser.find_element(By.CSS_SELECTOR, '#lineage li[data-round="2"] a.download').get_attribute("href")
    browser.set_script_timeout(30)
    digest = browser.execute_async_script(  # the browser downloads the bytes and hashes them itself
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => crypto.subtle.digest('SHA-256', b))"
        ".then(h => done(Array.from(new Uint8Array(h)).map(x => x.toString(16).padStart(2, '0')).join('')))"
        ".catch(e => done('error: ' + e));", link)
    gw, fl = ledger(net)
    try:
        want = fl.get_round(2).finalized.model_hash
    finally:
        gw.close()
    assert digest == want == report["rounds"][1]["model_hash"]
    shown = browser.find_element(By.CSS_SELECTOR, '#lineage li[data-round="2"]').get_attribute("data-hash")
    assert shown == want
    with urllib.request.urlopen(link, timeout=30) as resp:
        assert resp.headers["x-fedchain-model-sha256"] == want
        assert hashlib.sha256(resp.read()).hexdigest() == want
    screenshot(browser, "models")


def test_audit_page_runs_audit_verify_and_shows_ok(browser: Any, explorer: str) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, f"{explorer}/audit")
    assert cells(browser, "#verdict", "data-ok") == "none"
    browser.find_element(By.ID, "run-audit").click()
    wait(browser, 120, lambda d: cells(d, "#verdict", "data-ok") != "none")
    assert cells(browser, "#verdict", "data-ok") == "true", browser.find_element(By.TAG_NAME, "main").text[:3000]
    assert "audit OK" in browser.find_element(By.ID, "verdict").text
    assert browser.find_elements(By.ID, "no-findings")
    screenshot(browser, "audit")


def test_blocks_show_validation_codes_creators_and_endorsers(browser: Any, explorer: str) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, f"{explorer}/blocks")
    assert browser.find_elements(By.CSS_SELECTOR, "#blocks tbody tr")
    screenshot(browser, "blocks")
    open_page(browser, f"{explorer}/rounds/1")  # round 1's first update, through /tx/ID -> its block
    link = browser.find_element(By.CSS_SELECTOR, "#updates tbody tr a").get_attribute("href")
    tx_id = link.rsplit("/", 1)[1]
    open_page(browser, link)
    assert f"#tx-{tx_id}" in browser.current_url
    row = browser.find_element(By.ID, f"tx-{tx_id}")
    assert row.get_attribute("data-code") == "VALID"
    text = row.text
    assert "SubmitUpdate" in text and "(Org" in text and ", hospital)" in text  # creator: name, MSP, role
    assert "peer0." in text  # endorsing peers by name
    screenshot(browser, "block")
    for name, path in (("consortium", "/"), ("participants", "/participants")):
        open_page(browser, explorer + path)
        screenshot(browser, name)
    assert "hospital4" in browser.find_element(By.ID, "participants").text


def test_bad_input_on_the_live_server(browser: Any, explorer: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{explorer}/rounds/99")
    assert "there is no round 99 on the ledger" in browser.find_element(By.CSS_SELECTOR, ".error").text
    for path, status in (("/rounds/99", 404), ("/blocks?page=zz", 400), ("/rounds?" + "x" * 5000, 414)):
        try:
            urllib.request.urlopen(explorer + path, timeout=10)
            raise AssertionError(f"{path} answered 200")
        except urllib.error.HTTPError as exc:
            assert exc.code == status, (path, exc.code)
    port = int(explorer.rsplit(":", 1)[1])
    for addr in _other_local_addresses():  # bound to 127.0.0.1 only
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, port)) != 0, f"the explorer answers on {addr}"


def test_tls_serves_https(demo: Any, tmp_path: Path) -> None:
    """--tls-cert/--tls-key: the same pages over HTTPS (a self-signed certificate for 127.0.0.1)."""
    import datetime as dt
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    net, _, _ = demo
    proc = subprocess.Popen([FEDCHAIN, "explorer", "--network", str(net), "--port", "0", "--no-live", "--tls-cert",
                             str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "fedchain explorer on https://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" on ", 1)[1].split()[0]
        ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with urllib.request.urlopen(url + "rounds", context=ctx, timeout=30) as resp:
            assert resp.status == 200 and 'id="round-2"' in resp.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _other_local_addresses() -> list[str]:
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        addrs = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the address of the default route, if any
        try:
            s.connect(("192.0.2.1", 9))
            addrs.add(s.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in addrs if not a.startswith("127."))


def test_a_new_round_appears_without_a_reload(browser: Any, explorer: str, demo: Any) -> None:
    """Last: leaves round 3 OPEN."""
    from selenium.webdriver.common.by import By

    net, _, _ = demo
    open_page(browser, f"{explorer}/rounds")
    wait(browser, 30, lambda d: cells(d, "#live-status", "data-state") == "on")
    browser.execute_script("window.__noReload = 'still here';")
    assert not browser.find_elements(By.ID, "round-3")
    gw, op = ledger(net, "operator")
    try:
        deadline = time.monotonic() + 30
        while len(op.get_round(2).attestations) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)  # a late attestation would race CreateRound on the round records
        head, last = op.head(), op.get_round(2)
        op.create_round({"round_id": 3, "base_model_hash": head.model_hash, "model_spec": last.model_spec.to_json(),
                         "hyperparameters": last.hyper.to_json(), "policy": last.policy.to_json(),
                         "deadline": time.time() + 600, "min_updates": 2})
    finally:
        gw.close()
    wait(browser, 30, lambda d: d.find_elements(By.ID, "round-3"))
    assert cells(browser, "#round-3", "data-state") == "OPEN"
    assert browser.execute_script("return window.__noReload") == "still here"  # same document: no reload
    assert "RoundCreated" in browser.find_element(By.ID, "events").text
    assert "RoundCreated round 3" in browser.find_element(By.ID, "live-status").text
