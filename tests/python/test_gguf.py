"""GGUF reader vs the `gguf` package's reader (an independent implementation): metadata values,
tensor infos and tensor bytes on the real SmolLM2 file and on files written here with every
metadata type; malformed files raise ggmlpy.GGUFError naming the file and the key / tensor."""
import numpy as np
import pytest

import gguf
from ggmlpy import GGUFError, _core


def reference_metadata(r):
    """{key: python value} from gguf.GGUFReader (skipping its GGUF.* header pseudo-keys)."""
    out = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        out[k] = f.contents()
    return out


def same_value(a, b):
    if isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6)
    if isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def check_against_gguf_py(path):
    ours = _core.GGUFReader(path)
    ref = gguf.GGUFReader(path)
    meta = ours.metadata
    ref_meta = reference_metadata(ref)
    assert list(meta) == list(ref_meta)  # same keys, file order
    for k, v in ref_meta.items():
        assert same_value(meta[k], v), k
    assert len(ours.tensors) == len(ref.tensors)
    for t, rt in zip(ours.tensors, ref.tensors):
        assert t["name"] == rt.name
        assert tuple(t["ne"]) == tuple(int(x) for x in rt.shape)  # gguf-py's shape is ne order
        assert t["type_id"] == int(rt.tensor_type)
        assert t["nbytes"] == rt.n_bytes
        assert ours.data_offset + t["offset"] == rt.data_offset
        got = ours.tensor_bytes(t["name"])
        assert not got.flags.writeable
        assert np.array_equal(got, np.frombuffer(rt.data.tobytes(), dtype=np.uint8))
    return ours


def test_smollm2_matches_gguf_py(smollm2_path):
    r = check_against_gguf_py(smollm2_path)
    assert r.version == 3 and r.alignment == 32 and r.mmapped
    assert r.metadata["llama.block_count"] == 30
    assert r.metadata_type("tokenizer.ggml.tokens") == "array[string]"
    assert len(r.metadata["tokenizer.ggml.merges"]) == 48900
    # reading into memory gives the same bytes
    m = _core.GGUFReader(smollm2_path, use_mmap=False)
    assert not m.mmapped
    assert np.array_equal(m.tensor_bytes("output_norm.weight"), r.tensor_bytes("output_norm.weight"))


@pytest.mark.parametrize("alignment", [32, 64, 256])
def test_every_value_type_roundtrip(tmp_path, alignment):
    p = tmp_path / "all.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 250)
    w.add_int8("t.i8", -120)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -32000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 1e-300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "caf\u00e9 \U0001F916")
    w.add_array("t.strs", ["a", "", "\u2581x", "\u65e5\u672c"])
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.floats", [0.5, -1.25])
    w.add_array("t.bools", [True, False])
    rng = np.random.default_rng(0)
    w.add_tensor("a", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("b", rng.standard_normal((7,)).astype(np.float16))
    q = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("c", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = check_against_gguf_py(p)
    assert r.alignment == alignment
    assert r.metadata["t.u64"] == 2**63 + 5
    assert r.metadata["t.str"] == "caf\u00e9 \U0001F916"
    assert r.metadata["t.bools"] == [True, False]
    assert [t["ne"] for t in r.tensors] == [(5, 3), (7,), (64, 2)]
    assert [t["type"] for t in r.tensors] == ["f32", "f16", "q8_0"]
    assert all(t["offset"] % alignment == 0 for t in r.tensors)


def test_version_2(tmp_path):
    # gguf-py writes v3; v2 has the same layout, so patching the version field gives a v2 file
    p = tmp_path / "v3.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_uint32("x", 7)
    w.add_tensor("t", np.arange(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    b = bytearray(p.read_bytes())
    b[4:8] = (2).to_bytes(4, "little")
    p2 = tmp_path / "v2.gguf"
    p2.write_bytes(bytes(b))
    r = _core.GGUFReader(p2)
    assert r.version == 2
    assert r.metadata["x"] == 7
    assert np.array_equal(r.tensor_bytes("t").view(np.float32), np.arange(4, dtype=np.float32))
    b[4:8] = (1).to_bytes(4, "little")
    p2.write_bytes(bytes(b))
    with pytest.raises(GGUFError, match="version 1"):
        _core.GGUFReader(p2)


def test_malformed_files(tmp_path, smollm2_path):
    data = smollm2_path.read_bytes()[:100_000]
    cases = {
        "empty": (b"", "empty"),
        "text": (b"hello, this is not a model\n" * 10, "not a GGUF file"),
        "header": (data[:20], "truncated"),
        "kv": (data[:1000], "truncated"),
    }
    for name, (content, msg) in cases.items():
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(content)
        with pytest.raises(GGUFError, match=msg) as e:
            _core.GGUFReader(p)
        assert str(p) in str(e.value)
    # the tokens array is cut: the message names the key
    p = tmp_path / "tokens.gguf"
    p.write_bytes(data)
    with pytest.raises(GGUFError, match=r"tokenizer\.ggml\.tokens.*truncated"):
        _core.GGUFReader(p)
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        _core.GGUFReader(tmp_path / "nope.gguf")
    with pytest.raises(OSError, match="directory"):
        _core.GGUFReader(tmp_path)


def test_absurd_counts_and_lengths(tmp_path):
    import struct
    hdr = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    p = tmp_path / "bad.gguf"
    # absurd key length
    p.write_bytes(hdr + struct.pack("<Q", 2**62) + b"\0" * 64)
    with pytest.raises(GGUFError, match="string length"):
        _core.GGUFReader(p)
    # absurd array count for key 'arr'
    p.write_bytes(hdr + struct.pack("<Q", 3) + b"arr" + struct.pack("<IIQ", 9, 8, 2**60) + b"\0" * 64)
    with pytest.raises(GGUFError, match="'arr'"):
        _core.GGUFReader(p)
    # absurd tensor count
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**40, 0) + b"\0" * 64)
    with pytest.raises(GGUFError, match="tensor count"):
        _core.GGUFReader(p)
    # unknown value type for key 'k'
    p.write_bytes(hdr + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99) + b"\0" * 64)
    with pytest.raises(GGUFError, match="'k'.*unknown value type"):
        _core.GGUFReader(p)


def _two_tensors_cut(p, name, rows, cut):
    """A GGUF with a 64-float tensor, then `name` of (rows, 64) floats, and its last `cut` bytes gone."""
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_tensor("first", np.zeros(64, dtype=np.float32))
    w.add_tensor(name, np.zeros((rows, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    p.write_bytes(p.read_bytes()[:-cut])


def test_tensor_past_end(tmp_path):
    p = tmp_path / "t.gguf"
    _two_tensors_cut(p, "last.weight", 4, 100)
    with pytest.raises(GGUFError, match=r"'last\.weight'.*past the end") as e:
        _core.GGUFReader(p)
    assert str(p) in str(e.value)


def test_missing_tensor_named(tmp_path):
    p = tmp_path / "small.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_tensor("x", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = _core.GGUFReader(p)
    assert r.tensor_bytes("x").view(np.float32).tolist() == [1.0] * 8
    with pytest.raises(GGUFError, match="'missing' not found"):
        r.tensor_bytes("missing")


# ---- hostile files (issue 15) ----------------------------------------------------------------

def _one_tensor_file(tmp_path, alignment):
    import gguf_raw as gr
    p = tmp_path / f"align{alignment}.gguf"
    p.write_bytes(gr.gguf_bytes([("general.alignment", gr.U32, alignment)], [("t", (3,), 0, 0)],
                                bytes(12), alignment=max(alignment, 1)))
    return p


@pytest.mark.parametrize("alignment", [1, 2, 4, 12, 2**21])
def test_bad_alignment_rejected(tmp_path, alignment):
    """The spec requires a multiple of 8: alignment 1 put tensor data at odd addresses."""
    with pytest.raises(GGUFError, match=r"general\.alignment.*power of two from 8"):
        _core.GGUFReader(_one_tensor_file(tmp_path, alignment))


def test_alignment_8_accepted(tmp_path):
    assert _core.GGUFReader(_one_tensor_file(tmp_path, 8)).alignment == 8


@pytest.mark.parametrize("where", ["key", "value", "tensor"])
def test_invalid_utf8_is_gguf_error(tmp_path, where):
    import gguf_raw as gr
    key = b"bad.\xff\xfekey" if where == "key" else b"general.name"
    value = b"caf\xc3(" if where == "value" else b"fine"
    tname = b"t\xed\xa0\x80" if where == "tensor" else b"t"   # a UTF-8 encoded surrogate
    p = tmp_path / "utf8.gguf"
    p.write_bytes(gr.gguf_bytes([(key, gr.STR, value)], [(tname, (4,), 0, 0)], bytes(16)))
    pattern = {"key": r"metadata key #0: invalid UTF-8 at byte 4 .*file offset 36",
               "value": r"key 'general\.name': invalid UTF-8 at byte 3",
               "tensor": r"tensor info #0 \(name\): invalid UTF-8 at byte 1"}[where]
    with pytest.raises(GGUFError, match=pattern):
        r = _core.GGUFReader(p)
        r.metadata, r.tensors   # before the fix: UnicodeDecodeError here


def test_overlapping_tensors_rejected(tmp_path):
    import gguf_raw as gr
    p = tmp_path / "overlap.gguf"
    p.write_bytes(gr.gguf_bytes([], [("a", (12,), 0, 0), ("b", (4,), 0, 32), ("c", (8,), 0, 64)], bytes(96)))
    with pytest.raises(GGUFError, match=r"overlap\.gguf: tensors 'a' .* and 'b' .* overlap"):
        _core.GGUFReader(p)
    p.write_bytes(gr.gguf_bytes([], [("a", (8,), 0, 0), ("b", (8,), 0, 32), ("c", (8,), 0, 64)], bytes(96)))
    assert [t["name"] for t in _core.GGUFReader(p).tensors] == ["a", "b", "c"]


def test_tensor_past_end_says_bytes(tmp_path):
    """A 38,400-byte tensor past the end is reported with its size, not as 'absurdly many'."""
    p = tmp_path / "t.gguf"
    _two_tensors_cut(p, "big.weight", 150, 30000)
    with pytest.raises(GGUFError, match=r"'big\.weight' \[64, 150\] f32 needs 38400 bytes at data offset 256, "
                                        r"past the end of the file: its data section has 8656 bytes"):
        _core.GGUFReader(p)
