"""The web console in a real browser: headless Chromium driven by Playwright.

Run by tests/tests/e2e/console_browser.rs beside a real `airlock run --console`: this script's
standard input is the host's standard output and its standard output the host's standard input,
so it types into the line console (to make a call wait for approval, or to see a call's answer)
while it clicks through the web console. Each check waits with a generous deadline (the machine
may be slow and shared), never a fixed sleep. Any failed check ends the script with status 1 and
a line starting `FAILED`; success ends with `console checks passed`.

    python console.py --url URL --plugins hello,counter,... --chromium /usr/bin/chromium \
        --screenshots DIR
"""

import argparse
import os
import queue
import re
import sys
import threading
import time

from playwright.sync_api import expect, sync_playwright

# Deadlines, in milliseconds: long, since the machine may be busy building other things.
WAIT_MS = 60_000
LAUNCH_MS = 180_000

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class CheckFailed(Exception):
    """A check of the console did not hold."""


class LineConsole:
    """The host's line console, over the pipes this script was given."""

    def __init__(self):
        # The pipes move to descriptors of their own (not inherited by the browser or the
        # Playwright driver); fd 1 becomes standard error, so nothing printed by accident can
        # reach the host as a command.
        self._in = os.fdopen(os.dup(0), "rb")
        self._out = os.fdopen(os.dup(1), "wb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        self._lines = queue.Queue()
        self.transcript = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self._in:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def run(self, command, pattern):
        """Types `command` and waits for an answer line matching `pattern`; its match."""
        # What earlier commands printed after their matching line is theirs, not this one's.
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is None:
                raise CheckFailed("the host's output ended")
            self.transcript.append(line)
        self.transcript.append(f"> {command}")
        try:
            self._out.write(command.encode() + b"\n")
            self._out.flush()
        except BrokenPipeError as error:
            raise CheckFailed(f"the host's line console is gone ({error})") from error
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise CheckFailed(
                    f"the line console never answered {command!r} with /{pattern}/; "
                    f"it said: {self.transcript[-12:]}"
                ) from None
            if line is None:
                raise CheckFailed(f"the host's output ended while waiting for /{pattern}/")
            self.transcript.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def close(self):
        self._out.close()


class Steps:
    """Names each step as it starts, so a failure says where it happened."""

    current = "starting"

    def __call__(self, name):
        self.current = name
        print(f"step: {name}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--plugins", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    console = LineConsole()
    step = Steps()
    page = None
    script_errors = []
    try:
        with sync_playwright() as playwright:
            step("launching chromium")
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                args=CHROMIUM_ARGS,
                headless=True,
                timeout=LAUNCH_MS,
            )
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                page.set_default_navigation_timeout(WAIT_MS)
                page.on("pageerror", lambda error: script_errors.append(str(error)))
                check_console(playwright, page, console, step, args)
                if script_errors:
                    raise CheckFailed(f"the console's page threw: {script_errors}")
            finally:
                browser.close()
    except Exception as error:  # every failure, Playwright's included, is reported the same way
        print(f"FAILED at step {step.current!r}: {error}", file=sys.stderr)
        if script_errors:
            print(f"the page's script errors: {script_errors}", file=sys.stderr)
        print(f"line console transcript: {console.transcript[-30:]}", file=sys.stderr)
        return 1
    finally:
        console.close()
    print("console checks passed", file=sys.stderr, flush=True)
    return 0


def check_console(playwright, page, console, step, args):
    expect.set_options(timeout=WAIT_MS)
    shots = args.screenshots
    plugins = [p for p in args.plugins.split(",") if p]

    step("opening the console with its token")
    page.goto(args.url)
    expect(page.locator("table[data-plugins]")).to_be_visible()
    if "token=" in page.url:
        raise CheckFailed(f"the token stayed in the address bar: {page.url}")
    origin = re.match(r"https?://[^/]+", args.url).group(0)
    session = [c for c in page.context.cookies() if c["name"] == "airlock_console"]
    if len(session) != 1 or not session[0]["httpOnly"] or session[0]["sameSite"] != "Strict":
        raise CheckFailed(f"the session cookie is not HttpOnly and SameSite=Strict: {session}")
    stranger = playwright.request.new_context()
    for path in ("/", "/api/events"):
        status = stranger.get(origin + path, max_redirects=0).status
        if status != 401:
            raise CheckFailed(f"GET {path} without the session answered {status}, not 401")
    stranger.dispose()

    step("the plugins view lists the demo's plugins")
    table = page.locator("table[data-plugins]")
    for plugin in plugins:
        row = table.locator(f'tr[data-plugin="{plugin}"]')
        expect(row).to_be_visible()
        for field in ("state", "generation", "isolation", "signature", "calls", "faults"):
            expect(row.locator(f'[data-field="{field}"]')).to_have_count(1)
        expect(row.locator('[data-field="generation"]')).to_have_text(re.compile(r"\d"))
    expect(table.locator("tr[data-plugin]")).to_have_count(len(plugins))
    if "crashy" in plugins:
        isolation = table.locator('tr[data-plugin="crashy"] [data-field="isolation"]')
        expect(isolation).to_contain_text("process")
    page.screenshot(path=os.path.join(shots, "plugins.png"))

    step("a call waits for the operator's approval")
    waiting = console.run(
        '/call hello greet {"name": "waiting Ada"}', r"pending_approval #?(\d+)"
    ).group(1)
    page.locator('a[data-view="pending"]').click()
    row = page.locator(f'tr[data-approval="{waiting}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("hello")
    page.screenshot(path=os.path.join(shots, "pending.png"))

    step("approving it with a click completes the waiting call")
    row.locator('button[data-decision="approve"]').click()
    expect(page.locator("[data-decision-result]")).to_contain_text("Hello there, waiting Ada!")
    expect(page.locator(f'tr[data-approval="{waiting}"]')).to_have_count(0)
    console.run("/approvals", r"no call waits for approval")

    step("the config form of hello shows its config")
    page.locator('a[data-view="plugins"]').click()
    page.locator('tr[data-plugin="hello"] a[href="#/plugin/hello"]').click()
    detail = page.locator('section[data-plugin-detail="hello"]')
    expect(detail).to_be_visible()
    for chart in ("calls", "latency", "faults"):
        expect(detail.locator(f'svg[data-chart="{chart}"]')).to_be_visible()
    form = detail.locator("form[data-config-form]")
    greeting = form.locator('input[name="greeting"]')
    expect(greeting).to_have_value("Hello there")

    step("a good config applies, and the next call shows it")
    greeting.fill("Howdy")
    form.locator('button[type="submit"]').click()
    message = detail.locator("[data-config-message]")
    expect(message).to_contain_text("applied")
    console.run('/call hello greet {"name": "Bob"}', r'^ok "Howdy, Bob!"$')

    step("a config the schema refuses shows the schema's message and changes nothing")
    greeting.fill("")
    form.locator('button[type="submit"]').click()
    expect(message).to_contain_text("minLength")
    expect(message).not_to_contain_text("applied")
    console.run('/call hello greet {"name": "Bob"}', r'^ok "Howdy, Bob!"$')

    step("a config the plugin refuses shows the plugin's own message and changes nothing")
    greeting.fill("   ")
    form.locator('button[type="submit"]').click()
    expect(message).to_contain_text("greeting must not be blank")
    console.run('/call hello greet {"name": "Bob"}', r'^ok "Howdy, Bob!"$')
    greeting.fill("Howdy")
    form.locator('button[type="submit"]').click()
    expect(message).to_contain_text("applied")

    step("revoking a capability takes it away")
    console.run("/call kv-counter increment", r"^ok \d+$")
    page.locator('a[data-view="plugins"]').click()
    page.locator('tr[data-plugin="kv-counter"] a[href="#/plugin/kv-counter"]').click()
    detail = page.locator('section[data-plugin-detail="kv-counter"]')
    expect(detail.locator("ul[data-grants] li").filter(has_text="kv")).not_to_have_count(0)
    detail.locator('input[name="capability"]').fill("kv")
    with page.expect_request(lambda request: request.method == "POST") as posted:
        detail.locator('button[data-action="revoke"]').click()
    revoke = posted.value
    expect(detail.locator("[data-action-result]")).to_contain_text("revoked")
    console.run("/call kv-counter increment", r"^error capability_violation")

    step("a request from another site cannot act, even with the operator's session")
    for headers in ({}, {"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = page.request.post(
            revoke.url,
            data=revoke.post_data,
            headers={"Content-Type": "application/json", **headers},
        )
        if answer.status != 403:
            raise CheckFailed(f"POST {revoke.url} with {headers} answered {answer.status}, not 403")

    step("disable, enable and reload from the plugin's page")
    console.run("/call counter get", r"^ok ")
    page.locator('a[data-view="plugins"]').click()
    page.locator('tr[data-plugin="counter"] a[href="#/plugin/counter"]').click()
    detail = page.locator('section[data-plugin-detail="counter"]')
    outcome = detail.locator("[data-action-result]")
    detail.locator('button[data-action="disable"]').click()
    expect(outcome).to_have_text("disabled")
    expect(detail.locator('[data-field="state"]')).to_contain_text("disabled")
    console.run("/call counter get", r"^error ")
    detail.locator('button[data-action="enable"]').click()
    expect(outcome).to_have_text("enabled")
    expect(detail.locator('[data-field="state"]')).not_to_contain_text("disabled")
    console.run("/call counter get", r"^ok ")
    generation = detail.locator('[data-field="generation"]')
    before = int(generation.inner_text())
    detail.locator('button[data-action="reload"]').click()
    expect(outcome).to_contain_text(re.compile(r"generation \d+ loaded"))
    loaded = int(re.search(r"generation (\d+)", outcome.inner_text()).group(1))
    if loaded <= before:
        raise CheckFailed(f"a reload from generation {before} loaded generation {loaded}")
    expect(generation).to_have_text(str(loaded))
    console.run("/call counter created", r"^ok ")

    step("the revoke shows in the audit view")
    page.locator('a[data-view="audit"]').click()
    audit = page.locator("table[data-audit]")
    revoked = audit.locator('tr[data-outcome="revoked"]').filter(has_text="kv-counter")
    expect(revoked).to_have_count(1)
    expect(audit.locator('tr[data-outcome="approved"]').filter(visible=True)).not_to_have_count(0)

    step("the audit view filters")
    page.locator("input[data-audit-filter]").fill("kv-counter")
    expect(revoked.filter(visible=True)).to_have_count(1)
    expect(audit.locator('tr[data-outcome="approved"]').filter(visible=True)).to_have_count(0)
    page.locator("input[data-audit-filter]").fill("")

    step("the audit view follows live")
    console.run("/call snoop peek", r"^(ok|error)")
    denied = audit.locator('tr[data-outcome="denied"]').filter(has_text="snoop")
    expect(denied.first).to_be_visible()
    first = audit.locator("tr[data-outcome]").first
    expect(first).to_contain_text("snoop")
    page.screenshot(path=os.path.join(shots, "audit.png"))

    step("the counters and charts follow the calls")
    for n in range(6):
        console.run(f'/call hello greet {{"name": "caller {n}"}}', rf'^ok "Howdy, caller {n}!"$')
    page.locator('a[data-view="plugins"]').click()
    calls = page.locator('tr[data-plugin="hello"] [data-field="calls"]')
    # The approved call, three greetings of Bob and these six.
    page.wait_for_function(
        "cell => parseInt(cell.textContent, 10) >= 10", arg=calls.element_handle()
    )
    page.locator('tr[data-plugin="hello"] a[href="#/plugin/hello"]').click()
    chart = page.locator('section[data-plugin-detail="hello"] svg[data-chart="calls"]')
    expect(chart).to_be_visible()
    draw_calls(page)
    page.screenshot(path=os.path.join(shots, "plugin.png"), full_page=True)


def draw_calls(page):
    """Gives the calls chart its next redraw (the server samples once a second, the page
    redraws every two), so the screenshot shows the calls; a picture, not a check."""
    try:
        page.wait_for_function(
            """() => [...document.querySelectorAll('svg[data-chart="calls"] polyline')]
                   .some(line => (line.getAttribute("points") || "").trim().includes(" "))""",
            timeout=15_000,
        )
    except Exception:  # a chart drawn some other way: the screenshot shows what there is
        pass


if __name__ == "__main__":
    sys.exit(main())
