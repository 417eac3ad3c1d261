#!/usr/bin/env python3
"""The chat page (GET /) in headless Chromium, against a running `wavefront serve`.

    chat_page.py URL [--api-key KEY]

Boots nothing: engine/tests/chat_page.rs starts the server (CPU, SmolLM2, a 256-token context)
and runs this. It types a message and sees the reply stream in (the assistant bubble observed
at two or more lengths, then the usage line), stops a long second reply mid-stream (the text
stops growing, is kept in the conversation, the page is ready to send again, and does), clears
the conversation, and fails on any SEVERE message in the browser's console. Exits 0 on
success, 1 with the reason otherwise.
"""

import argparse
import re
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

# A page-side record of every length an assistant bubble's text took, one per change (each
# `textContent =` puts in a new text node, kept in its mutation record), so that a stream is seen
# growing however many chunks arrive in one read and whatever the driver's polling rate.
OBSERVE = """
window.__lengths = [];
window.__mutations = 0;
new MutationObserver((records) => {
  for (const r of records) {
    window.__mutations += 1;
    if (!r.target.classList || !r.target.classList.contains('assistant')) continue;
    let n = 0;
    for (const node of r.addedNodes) n += node.textContent.length;
    const seen = window.__lengths;
    if (seen[seen.length - 1] !== n) seen.push(n);
  }
}).observe(document.getElementById('log'), {childList: true, subtree: true});
"""


def log(msg):
    print(msg, flush=True)


class Page:
    def __init__(self, driver):
        self.d = driver

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def el(self, id_):
        return self.d.find_element(By.ID, id_)

    def set_field(self, id_, value):
        field = self.el(id_)
        field.clear()
        if value != "":
            field.send_keys(value)

    def wait(self, what, predicate, timeout):
        return WebDriverWait(self.d, timeout, poll_frequency=0.05).until(
            lambda _: predicate(), message=f"timed out after {timeout} s waiting for {what}"
        )

    def state(self):
        return self.js("return document.body.dataset.state")

    def reply(self):
        """The last assistant bubble's text and classes."""
        return self.js(
            "const b = document.querySelectorAll('#log .assistant');"
            "const last = b[b.length - 1];"
            "return last ? [last.textContent, last.className] : null;"
        )

    def lengths(self):
        return self.js("return window.__lengths")

    def reset_observer(self):
        self.js("window.__lengths = []; window.__mutations = 0;")

    def ready(self):
        return (
            self.state() == "idle"
            and self.el("send").is_enabled()
            and not self.el("stop").is_enabled()
        )


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def driver():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def run(page, url, api_key):
    page.d.get(url)
    page.wait("the page", lambda: page.el("send").is_displayed(), 20)
    check(page.d.title == "Wavefront chat", f"title: {page.d.title!r}")
    check(page.ready(), "the page starts ready to send")
    page.js(OBSERVE)
    if api_key:
        page.set_field("api_key", api_key)

    # Shift+Enter is a new line, not a send.
    page.el("input").send_keys("a", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "b")
    check(page.el("input").get_attribute("value") == "a\nb", "Shift+Enter adds a new line")
    check(page.reply() is None, "Shift+Enter sent nothing")

    # 0. A request the server refuses (max_tokens past the 256-token context): its error is
    # shown, and the exchange is left out of the conversation.
    page.set_field("max_tokens", "1000")
    page.set_field("input", "Hello")
    page.el("send").click()
    page.wait("the error", lambda: page.reply() is not None and page.ready(), 30)
    text, classes = page.reply()
    log(f"refused: {text!r}")
    check("error" in classes and text.startswith("error: 400: "), f"an error bubble: {text!r}")
    check("max_tokens" in text, f"the error names the field: {text!r}")
    check(page.js("return conversation.length") == 0, "a refused exchange is not kept")

    # 1. A short greedy reply, sent with the button: it streams in, then the usage shows.
    page.set_field("temperature", "0")
    page.set_field("max_tokens", "16")
    page.set_field("input", "What is the capital of France?")
    page.reset_observer()
    t = time.monotonic()
    page.el("send").click()
    page.wait("the reply to finish", lambda: page.reply() is not None and page.ready(), 60)
    text, classes = page.reply()
    lengths = page.lengths()
    status = page.el("status").text
    log(f"first reply in {time.monotonic() - t:.2f} s: {text!r}")
    log(f"  lengths seen while streaming: {lengths}")
    log(f"  status: {status!r}")
    check(text.strip() != "", "the reply has text")
    check("Paris" in text, f"greedy SmolLM2 names Paris: {text!r}")
    distinct = {n for n in lengths if n > 0}
    check(len(distinct) >= 2, f"the reply grew through two or more lengths: {lengths}")
    check(lengths[-1] == len(text), f"the last length seen is the text's: {lengths}")
    check(re.match(r"\d+ prompt \+ \d+ completion tokens", status),
          f"the usage is shown: {status!r}")
    check("error" not in classes and "stopped" not in classes, f"classes: {classes}")
    check(page.js("return conversation.length") == 2, "the exchange is in the conversation")

    # 2. A long reply, sent with Enter, stopped mid-stream.
    page.set_field("max_tokens", "150")
    page.reset_observer()
    page.el("input").send_keys("Count from 1 to 100, separated by commas.", Keys.ENTER)

    def grown():
        check("error" not in page.reply()[1], f"the long reply failed: {page.reply()[0]!r}")
        return len({n for n in page.lengths() if n > 0}) >= 3

    page.wait("three lengths of the long reply", grown, 60)
    check(page.state() == "streaming", "still streaming before Stop")
    page.el("stop").click()
    page.wait("the page to be ready after Stop", page.ready, 10)
    text, classes = page.reply()
    mutations = page.js("return window.__mutations")
    status = page.el("status").text
    log(f"stopped reply: {text!r}")
    log(f"  status: {status!r}")
    check(text.strip() != "", "the partial reply is kept on the page")
    check("stopped" in classes and "error" not in classes, f"marked stopped: {classes}")
    check(status.startswith("stopped"), f"status says stopped: {status!r}")
    # Quiet for a second: nothing more arrives after Stop.
    time.sleep(1.0)
    check(page.reply()[0] == text, "the text does not grow after Stop")
    check(page.js("return window.__mutations") == mutations, "no change to the log after Stop")
    turns = page.js("return conversation")
    check(len(turns) == 4 and turns[3] == {"role": "assistant", "content": text},
          f"the partial reply is the conversation's last turn: {turns}")

    # 3. Ready to send again, and it does (the server freed the stopped stream's slot).
    page.set_field("max_tokens", "4")
    page.set_field("input", "Thanks!")
    page.el("send").click()
    page.wait("the third reply",
              lambda: page.ready() and page.js("return conversation.length") == 6, 60)
    text, classes = page.reply()
    log(f"reply after Stop: {text!r}")
    check(text.strip() != "" and "error" not in classes, f"a reply after Stop: {text!r} {classes}")

    # 4. Clear forgets the conversation and empties the log.
    page.el("clear").click()
    check(page.js("return conversation.length") == 0, "Clear empties the conversation")
    check(page.reply() is None and page.el("log").text == "", "Clear empties the log")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    d = driver()
    try:
        log(f"{d.capabilities.get('browserName')} {d.capabilities.get('browserVersion')}")
        page = Page(d)
        try:
            run(page, args.url, args.api_key)
        finally:
            console = d.get_log("browser")
            for entry in console:
                log(f"  console {entry['level']}: {entry['message']}")
        # The one refused request of step 0 is logged by Chrome as a failed load; any other
        # SEVERE message fails the test.
        refused = "/v1/chat/completions - Failed to load resource: the server responded with " \
                  "a status of 400"
        severe = [e for e in console if e["level"] == "SEVERE"]
        expected = [e for e in severe if refused in e["message"]]
        check(len(expected) == 1, f"the refused request logged once: {len(expected)}")
        check(len(severe) == 1, f"{len(severe) - len(expected)} unexpected SEVERE messages")
    except Exception as e:  # noqa: BLE001 - one line of reason, then the trace
        log(f"FAILED: {e}")
        raise
    finally:
        d.quit()
    log("ok: refused, streamed, stopped mid-stream, sent again, cleared; console clean")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        sys.exit(1)
