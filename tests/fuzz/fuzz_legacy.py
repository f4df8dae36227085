"""Fuzz target (atheris) for the Python readers of legacy files: ggml GPT-J .bin (LegacyGPTJ),
llama2.c .bin (Llama2c) and llama2.c tokenizer.bin (read_tokenizer_bin), plus detect_format.
Input byte 0 picks the reader (0 GPT-J, 1 llama2.c, 2 tokenizer.bin with byte 1 as the vocabulary
size), the rest is the file. A malformed file must raise ValueError; any other exception is a
finding. After a successful parse every tensor is read back, as the converter would.

    python tests/fuzz/fuzz_legacy.py [libFuzzer flags] WORK_DIR tests/data/fuzz/corpus/legacy

TestOneInput is importable without atheris: tests/python/test_fuzz_regressions.py replays the
corpus and tests/data/fuzz/regressions/legacy through it.
"""
import math
import sys
import tempfile
from pathlib import Path

_tmp = None


def _path() -> Path:
    global _tmp
    if _tmp is None:  # one scratch folder per process; the readers take paths, not bytes
        _tmp = tempfile.TemporaryDirectory(prefix="ggmlpy_fuzz_legacy_")
    return Path(_tmp.name) / "input.bin"


def TestOneInput(data: bytes) -> None:
    import gguf
    from ggmlpy.convert import legacy, legacy_gptj, llama2c

    if len(data) < 2:
        return
    sel = data[0] % 3
    path = _path()
    path.write_bytes(data[2:] if sel == 2 else data[1:])
    try:
        if sel == 0:
            m = legacy_gptj.LegacyGPTJ(path)
            for t in m.tensors.values():  # every tensor accepted lies inside the file, whole
                block, tsize = gguf.GGML_QUANT_SIZES[t.qtype]
                if t.nbytes != math.prod(t.ne) // block * tsize or t.offset + t.nbytes > m.file_size:
                    raise AssertionError(f"tensor {t.name} dims {t.ne}: {t.nbytes} bytes at {t.offset}")
            for name in m.names():
                m.load(name)
            m.params()
        elif sel == 1:
            m = llama2c.Llama2c(path)
            for name, (_, layers, _) in m.arrays.items():
                m.read(name, 0 if layers else None)
            m.plan("f32")
        else:
            llama2c.read_tokenizer_bin(path, data[1])
        legacy.detect_format(path)
    except ValueError:
        pass


def main():
    import atheris

    with atheris.instrument_imports(include=["ggmlpy.convert"]):
        import ggmlpy.convert.legacy  # noqa: F401  (instrumented before TestOneInput imports it)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
