"""The web chat page at / in a real headless Chromium (Selenium, the system chromedriver; nothing
is downloaded): a streamed reply appears and grows, equals the API's greedy reply for the same
conversation, multi-turn history is sent, Stop ends a long reply, New chat clears the history.
A screenshot goes to the test's temp dir, and also to $GGMLPY_SCREENSHOT when that is set."""
import os
import shutil
import time

import httpx
import pytest

from server_proc import run_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SYSTEM = "You are a concise assistant."


@pytest.fixture(scope="module")
def server(smollm2_path):
    with run_server(smollm2_path) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install the Debian packages chromium and chromium-driver "
                    "(tests/run.sh does, as root)")
    os.environ["SE_OFFLINE"] = "true"     # Selenium Manager must not look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1000,900", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def _api_reply(server, messages, max_tokens):
    r = httpx.post(server.base_url + "/chat/completions", timeout=120,
                   json={"messages": messages, "temperature": 0, "max_tokens": max_tokens})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def _wait(cond, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _set(driver, id, value):
    el = driver.find_element("id", id)
    el.clear()
    el.send_keys(str(value))


def _last_reply(driver):
    bubbles = driver.find_elements("css selector", "#messages .msg.assistant")
    return bubbles[-1] if bubbles else None


def _record_lengths(driver):
    # a MutationObserver notes the reply's length at each change, so growth is seen even when
    # the whole reply takes less time than polling from here would resolve
    driver.execute_script("""
        window.__lens = [];
        new MutationObserver(() => {
          const t = document.querySelectorAll('#messages .msg.assistant .text');
          if (t.length) window.__lens.push(t[t.length - 1].textContent.length);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
    """)


def _send_and_wait(driver, text, via_enter=True):
    from selenium.webdriver.common.keys import Keys
    n = len(driver.find_elements("css selector", "#messages .msg.assistant"))
    box = driver.find_element("id", "input")
    box.send_keys(text)
    if via_enter:
        box.send_keys(Keys.ENTER)
    else:
        driver.find_element("id", "send").click()
    _wait(lambda: len(driver.find_elements("css selector", "#messages .msg.assistant")) == n + 1, what="a reply")
    _wait(lambda: _last_reply(driver).get_attribute("data-state") != "streaming", what="the reply to end")
    return _last_reply(driver)


def test_page_is_self_contained_and_labelled(server, browser):
    browser.get(server.url + "/")
    assert browser.title == "ggmlpy chat"
    for el in browser.find_elements("css selector", "script[src], link[href]"):
        src = el.get_attribute("src") or el.get_attribute("href")
        assert src.startswith(server.url + "/static/"), src       # nothing from elsewhere
    for el in browser.find_elements("css selector", "textarea, input"):
        assert browser.find_elements("css selector", f"label[for='{el.get_attribute('id')}']"), el.get_attribute("id")
    assert browser.find_element("id", "messages").get_attribute("aria-live") == "polite"
    assert browser.find_element("id", "status").get_attribute("role") == "status"
    _wait(lambda: browser.find_element("id", "model").text == "SmolLM2-135M-Instruct.Q4_1.gguf", 10, "model name")


def test_chat_streams_matches_api_stops_and_resets(server, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys
    browser.get(server.url + "/")
    browser.find_element("css selector", "#settings summary").click()
    _set(browser, "system", SYSTEM)
    _set(browser, "temperature", 0)
    _set(browser, "max-tokens", 24)

    # Shift+Enter is a newline, not a send
    box = browser.find_element("id", "input")
    box.send_keys("a", Keys.SHIFT, Keys.ENTER, Keys.NULL, "b")
    assert box.get_attribute("value") == "a\nb"
    assert not browser.find_elements("css selector", "#messages .msg")
    box.clear()

    # turn 1 (Enter): streamed, growing, equal to the API's greedy reply
    _record_lengths(browser)
    q1 = "What is the capital of France?"
    reply1 = _send_and_wait(browser, q1).find_element("css selector", ".text").text
    lens = browser.execute_script("return window.__lens")
    assert len({n for n in lens if n > 0}) >= 2, lens          # it grew while streaming
    conv = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q1}]
    want1 = _api_reply(server, conv, 24)
    assert reply1 == want1.strip() and reply1
    assert _last_reply(browser).get_attribute("data-state") == "done"
    assert _last_reply(browser).get_attribute("aria-busy") == "false"
    assert browser.find_element("id", "status").text == "Ready"

    # turn 2 (Send button): the page sends the whole history
    q2 = "And of Germany?"
    reply2 = _send_and_wait(browser, q2, via_enter=False).find_element("css selector", ".text").text
    conv += [{"role": "assistant", "content": want1}, {"role": "user", "content": q2}]
    assert reply2 == _api_reply(server, conv, 24).strip() and reply2

    # Stop during a long reply: it stops growing and the page is ready again
    _set(browser, "max-tokens", 600)
    browser.find_element("id", "input").send_keys("Write a long story about a dragon and a knight.", Keys.ENTER)
    _wait(lambda: len(browser.find_elements("css selector", "#messages .msg.assistant")) == 3, what="reply 3")
    _wait(lambda: len(_last_reply(browser).find_element("css selector", ".text").text) > 40, what="text")
    browser.find_element("id", "stop").click()
    _wait(lambda: _last_reply(browser).get_attribute("data-state") == "stopped", 10, "the stop")
    stopped = _last_reply(browser).find_element("css selector", ".text").text
    time.sleep(1.0)
    assert _last_reply(browser).find_element("css selector", ".text").text == stopped   # no longer growing
    assert browser.find_element("id", "status").text == "Stopped"
    assert browser.find_element("id", "send").is_enabled() and not browser.find_element("id", "stop").is_enabled()
    _wait(lambda: httpx.get(server.url + "/health").json()["generating"] == 0, 10, "the server to stop generating")

    shot = tmp_path / "screenshot-web.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000
    if os.environ.get("GGMLPY_SCREENSHOT"):
        shutil.copy(shot, os.environ["GGMLPY_SCREENSHOT"])

    # Escape stops a reply too
    browser.find_element("id", "input").send_keys("Tell me a very long story about the sea.", Keys.ENTER)
    _wait(lambda: len(browser.find_elements("css selector", "#messages .msg.assistant")) == 4, what="reply 4")
    _wait(lambda: len(_last_reply(browser).find_element("css selector", ".text").text) > 10, what="text")
    browser.find_element("id", "input").send_keys(Keys.ESCAPE)
    _wait(lambda: _last_reply(browser).get_attribute("data-state") == "stopped", 10, "the stop by Escape")

    # New chat: history gone; the next question is answered as a first turn
    browser.find_element("id", "reset").click()
    assert not browser.find_elements("css selector", "#messages .msg")
    _set(browser, "max-tokens", 24)
    reply = _send_and_wait(browser, q1).find_element("css selector", ".text").text
    assert reply == reply1
    assert len(browser.find_elements("css selector", "#messages .msg")) == 2


def test_page_shows_api_errors(server, browser):
    browser.get(server.url + "/")
    browser.find_element("css selector", "#settings summary").click()
    _set(browser, "temperature", 9)      # out of range: the server's 400 message is shown
    bubble = _send_and_wait(browser, "Hi")
    assert bubble.get_attribute("data-state") == "error"
    assert "temperature" in bubble.text
    assert browser.find_element("id", "status").text == "Error"


def test_page_with_api_key(smollm2_path, browser):
    with run_server(smollm2_path, env={"GGMLPY_API_KEY": "page-key"}) as s:
        browser.get(s.url + "/")
        browser.find_element("css selector", "#settings summary").click()
        _set(browser, "temperature", 0)
        _set(browser, "max-tokens", 8)
        bubble = _send_and_wait(browser, "Hi")          # no key yet: the 401 message is shown
        assert bubble.get_attribute("data-state") == "error" and "API key" in bubble.text
        _set(browser, "api-key", "page-key")
        bubble = _send_and_wait(browser, "Hi")
        assert bubble.get_attribute("data-state") == "done" and bubble.find_element("css selector", ".text").text
