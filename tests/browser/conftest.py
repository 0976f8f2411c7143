"""Playwright driving Debian's chromium against pytest-django's live server."""

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests
# make around it are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
AXE_SOURCE = Path(__file__).resolve().parent / "assets" / "axe-core" / "axe.min.js"
AXE_VERSION = "4.14.1"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "secret-pass-123"


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's chromium is missing at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


# Every page reports what the Content-Security-Policy blocked (and Chromium logs it too).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"} `
                + `on ${event.documentURI} (${event.sourceFile}:${event.lineNumber})`);
});
"""


@pytest.fixture
def page(browser, live_server, request):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    violations = []
    page.on("console", lambda message: violations.append(message.text) if message.type == "error" and (
        "Content Security Policy" in message.text or message.text.startswith("CSP violation")) else None)
    page.csp_violations = violations
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()
    # Every browser test also proves its pages work under the policy.
    assert violations == [], "the Content-Security-Policy blocked something:\n" + "\n".join(violations)


def login(page, username, password=PASSWORD):
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/pools/")


def logout(page):
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login/")


# axe-core runs in the page (evaluated through the DevTools protocol, so the page's
# Content-Security-Policy stays on); the rules are WCAG 2.1 A and AA plus best practices.
AXE_RUN = """
async () => {
  // Colours are read as they are drawn: wait for fades (dialogs, backdrops) to finish.
  await Promise.all(document.getAnimations().map((animation) => animation.finished.catch(() => null)));
  const result = await axe.run(document, {
    runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
    resultTypes: ["violations"],
  });
  return {version: axe.version, violations: result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": " + n.failureSummary.replace(/\\s+/g, " ")),
  }))};
}
"""


def axe_audit(page, label: str = ""):
    """Fail on any serious or critical accessibility violation axe-core finds on the page
    as it is now (dialogs open included); return the minor and moderate ones."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE.read_text())
    result = page.evaluate(AXE_RUN)
    assert result["version"] == AXE_VERSION
    blocking = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not blocking, f"axe-core on {label or page.url}:\n" + "\n".join(
        f"- {v['impact']} {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in blocking)
    return [v for v in result["violations"] if v not in blocking]
