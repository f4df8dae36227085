"""`ggmlpy chat`: an interactive chat in the terminal with the model's own chat template.

Each line typed is a user message; the reply streams as it is generated. The history is sent
every turn and the KV cache keeps the earlier turns (prefix reuse), so a turn costs only its new
tokens. Commands: /reset (forget the history, keep the system prompt), /exit (or /quit, or
end of input), /help. Ctrl-C while a reply streams stops that reply (what was written stays in the
history) and the chat goes on; Ctrl-C at the prompt clears the line.

When stdin is not a terminal (a pipe, a file), each line is one message, no prompt or banner is
printed, and stdout holds only the replies, one per message, each ended by a newline: easy to
script. When the history no longer fits the context, the oldest turns are dropped (a warning on
stderr says how many)."""
from __future__ import annotations

import sys

HELP = "/reset clears the history, /exit quits, Ctrl-C stops a reply"


def add_subparser(sub):
    from .cli import _add_model_flags
    s = sub.add_parser("chat", help="chat with a model in the terminal (its chat template; streams replies)",
                       description="Interactive chat with the model's chat template. " + HELP + ". "
                                   "With stdin a pipe, each line is a message and stdout gets one reply per line.")
    _add_model_flags(s)
    s.add_argument("-s", "--system", default=None, help="system prompt")
    s.add_argument("-n", "--n-predict", type=int, default=-1,
                   help="most tokens per reply (-1: until the end of the turn or a full context)")
    s.add_argument("--seed", type=int, default=-1, help="RNG seed (-1: random)")
    s.add_argument("--temp", type=float, default=0.7, help="temperature (0: greedy)")
    s.add_argument("--top-k", type=int, default=40, help="top-k (0: off)")
    s.add_argument("--top-p", type=float, default=0.95, help="top-p (1: off)")
    s.add_argument("--min-p", type=float, default=0.05, help="min-p (0: off)")
    s.add_argument("--repeat-penalty", type=float, default=1.0, help="repetition penalty (1: off)")
    s.add_argument("--chat-template-file", default=None,
                   help="a Jinja2 chat template to use instead of the model's")
    s.set_defaults(func=cmd_chat)


class Session:
    """The conversation: the system prompt, the turns, and fitting them into the context."""

    def __init__(self, model, system, chat_template, reply_room):
        self.model = model
        self.system = system
        self.template = chat_template
        self.reply_room = reply_room      # tokens kept free for the reply
        self.turns = []                   # [{"role": ..., "content": ...}], user/assistant

    def messages(self):
        sys_msg = [{"role": "system", "content": self.system}] if self.system else []
        return sys_msg + self.turns

    def prompt_tokens(self, messages):
        from . import chat
        text = self.model.apply_chat_template(messages, chat_template=self.template)
        return len(chat.prompt_ids(self.model, text))

    def fit(self) -> int:
        """Drops the oldest exchanges until the prompt and reply_room fit n_ctx; returns how many
        messages were dropped. ValueError when even the last message alone does not fit."""
        dropped = 0
        limit = self.model.n_ctx - self.reply_room
        while self.prompt_tokens(self.messages()) > limit:
            if len(self.turns) <= 1:
                raise ValueError(f"the message is too long for the context ({self.model.n_ctx} tokens, "
                                 f"{self.reply_room} kept for the reply): raise -c/--ctx-size")
            # drop the oldest user message and the reply that followed it
            n = 2 if len(self.turns) > 2 and self.turns[1]["role"] == "assistant" else 1
            del self.turns[:n]
            dropped += n
        return dropped


def _read(interactive: bool):
    """The next line typed, or None at the end of input."""
    if interactive:
        try:
            return input("> ")
        except EOFError:
            print(file=sys.stdout)
            return None
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\n").rstrip("\r")


def cmd_chat(a) -> int:
    from .cli import CliError, _check, _check_model_flags, _resolve_model
    from .model import Model
    _check_model_flags(a)
    _check(a.n_predict >= -1 and a.n_predict != 0, "-n/--n-predict", a.n_predict, "an int >= 1 or -1")
    _check(a.temp >= 0, "--temp", a.temp, ">= 0")
    template = None
    if a.chat_template_file is not None:
        try:
            with open(a.chat_template_file, encoding="utf-8") as f:
                template = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise CliError(f"cannot read chat template {a.chat_template_file}: {e}")
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    path = _resolve_model(a.model)
    model = Model(path, n_ctx=a.ctx_size, n_threads=a.threads, n_batch=a.batch_size,
                  use_mmap=not a.no_mmap, use_mlock=a.mlock, mem_budget=a.mem_budget, lora=a.lora, seed=a.seed, kv_type=a.kv_type)
    max_tokens = None if a.n_predict == -1 else a.n_predict
    room = max_tokens if max_tokens is not None else min(256, model.n_ctx // 4)
    session = Session(model, a.system, template, room)
    out = sys.stdout
    if interactive:
        print(f"ggmlpy chat: {path} (n_ctx {model.n_ctx}). {HELP}.", file=sys.stderr)
    try:
        model.apply_chat_template([{"role": "user", "content": "x"}], chat_template=template)
    except ValueError as e:
        model.close()
        raise CliError(f"the chat template does not render: {e}")
    try:
        while True:
            try:
                line = _read(interactive)
            except KeyboardInterrupt:      # Ctrl-C at the prompt: a fresh line, the chat goes on
                print(file=out)
                continue
            if line is None:
                return 0
            cmd = line.strip()
            if cmd in ("/exit", "/quit"):
                return 0
            if cmd == "/reset":
                session.turns = []
                model.reset()
                if interactive:
                    print("(history cleared)", file=sys.stderr)
                continue
            if cmd == "/help":
                print(HELP, file=sys.stderr)
                continue
            if not cmd:
                continue
            session.turns.append({"role": "user", "content": line})
            try:
                dropped = session.fit()
            except ValueError as e:
                session.turns.pop()
                print(f"ggmlpy: error: {e}", file=sys.stderr)
                continue
            if dropped:
                print(f"ggmlpy: warning: the history is longer than the context; dropped the oldest "
                      f"{dropped} messages", file=sys.stderr)
            reply = []
            stream = None
            try:
                stream = model.create_chat_completion(
                    session.messages(), max_tokens=max_tokens, temperature=a.temp, top_k=a.top_k,
                    top_p=a.top_p, min_p=a.min_p, repeat_penalty=a.repeat_penalty, stream=True,
                    chat_template=template)
                for chunk in stream:
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        reply.append(piece)
                        out.write(piece)
                        out.flush()
            except KeyboardInterrupt:      # Ctrl-C during a reply: stop it, keep chatting
                if stream is not None:
                    stream.close()
                print(file=out)
                print("(reply stopped)", file=sys.stderr)
            else:
                print(file=out)
            out.flush()
            session.turns.append({"role": "assistant", "content": "".join(reply)})
    finally:
        model.close()
