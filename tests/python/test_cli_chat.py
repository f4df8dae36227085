"""`ggmlpy chat` end to end: through a pipe (one message per line, one reply per line on stdout)
and through a pseudo-terminal with pexpect (prompt, streaming, Ctrl-C stops a reply and the chat
goes on, /reset, /exit). Replies are checked against Model.chat with the same messages (greedy),
which test_chat checks against HF transformers."""
import os
import subprocess
import sys

import pexpect
import pytest

import ggmlpy

N = 24   # tokens per reply


@pytest.fixture(scope="module")
def smol(smollm2_path):
    m = ggmlpy.Model(smollm2_path, n_ctx=2048, n_threads=2)
    yield m
    m.close()


def expected(model, messages):
    model.reset()
    return model.chat(messages, temperature=0, max_tokens=N)


def chat_pipe(model_path, text, *flags):
    return subprocess.run([sys.executable, "-m", "ggmlpy", "chat", "-m", str(model_path), "--temp", "0",
                           "-n", str(N), "-t", "2", "-c", "2048", *flags],
                          input=text.encode(), capture_output=True, timeout=300, env=dict(os.environ))


def test_pipe_multi_turn_reset_and_system(smollm2_path, smol):
    u1, u2, u3 = "What is 2 plus 2?", "And 3 plus 3?", "Name a fruit."
    r = chat_pipe(smollm2_path, f"{u1}\n{u2}\n\n/reset\n{u3}\n")
    assert r.returncode == 0, r.stderr.decode()
    a1 = expected(smol, [{"role": "user", "content": u1}])
    a2 = expected(smol, [{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
                         {"role": "user", "content": u2}])
    a3 = expected(smol, [{"role": "user", "content": u3}])   # /reset forgot turns 1 and 2
    assert r.stdout.decode() == f"{a1}\n{a2}\n{a3}\n"
    # the system prompt flag
    sysmsg = "You are a pirate. Answer like one."
    r = chat_pipe(smollm2_path, f"{u3}\n", "-s", sysmsg)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == expected(smol, [{"role": "system", "content": sysmsg},
                                                {"role": "user", "content": u3}]) + "\n"


def test_pipe_exit_and_eof(smollm2_path):
    r = chat_pipe(smollm2_path, "/exit\nnever answered\n")
    assert r.returncode == 0 and r.stdout == b""
    r = chat_pipe(smollm2_path, "")
    assert r.returncode == 0 and r.stdout == b""


def test_pipe_history_dropped_when_context_full(smollm2_path):
    long = "tell me more about the history of the sea " * 12
    r = subprocess.run([sys.executable, "-m", "ggmlpy", "chat", "-m", str(smollm2_path), "--temp", "0",
                        "-n", "8", "-c", "256"], input=((long + "\n") * 4).encode(),
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().count("\n") == 4
    assert "dropped the oldest" in r.stderr.decode()


def test_bad_flags(smollm2_path, tmp_path):
    r = chat_pipe(smollm2_path, "", "--chat-template-file", str(tmp_path / "missing.jinja"))
    assert r.returncode == 1 and b"ggmlpy: error: cannot read chat template" in r.stderr
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for %}")
    r = chat_pipe(smollm2_path, "hi\n", "--chat-template-file", str(bad))
    assert r.returncode == 1 and b"ggmlpy: error: the chat template does not render" in r.stderr
    r = chat_pipe(smollm2_path, "", "-n", "0")
    assert r.returncode == 1 and b"-n/--n-predict" in r.stderr


def test_terminal_session(smollm2_path, smol):
    child = pexpect.spawn(sys.executable, ["-m", "ggmlpy", "chat", "-m", str(smollm2_path), "--temp", "0",
                                           "-n", "-1", "-t", "2", "-c", "2048"],
                          env=dict(os.environ), timeout=120, encoding="utf-8")
    try:
        child.expect_exact("/reset clears the history")
        child.expect_exact("> ")
        child.sendline("What is 2 plus 2?")
        child.expect_exact("What is 2 plus 2?")           # the terminal echoes the input
        want = smol.chat("What is 2 plus 2?", temperature=0)
        child.expect_exact("> ")
        assert want in child.before.replace("\r\n", "\n")
        # a reply that would run long: Ctrl-C stops it and the prompt comes back
        child.sendline("Write a very long story about a dragon, with many chapters.")
        child.expect_exact("many chapters.")
        child.expect(r"\w+ \w+ \w+ \w+")                   # some of the reply has streamed
        child.sendintr()
        child.expect_exact("(reply stopped)", timeout=30)
        child.expect_exact("> ")
        # the chat goes on; /reset then a question gives the answer of a fresh conversation
        child.sendline("/reset")
        child.expect_exact("(history cleared)")
        child.expect_exact("> ")
        child.sendline("Name a fruit.")
        child.expect_exact("Name a fruit.")
        child.expect_exact("> ")
        assert smol.chat("Name a fruit.", temperature=0) in child.before.replace("\r\n", "\n")
        # Ctrl-C at the prompt does not end the chat
        child.sendintr()
        child.expect_exact("> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
