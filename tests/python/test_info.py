"""`ggmlpy info` and the info bindings (issue 2, acceptance 3): the CPU feature list must match the
kernel's own /proc/cpuinfo flags, the default thread count must match the physical cores counted
independently here, and GGMLPY_ISA must force a table or fail with a clear error."""
import os
import platform
import subprocess
import sys

import pytest

import ggmlpy
from ggmlpy import _core

# Features `ggmlpy info` reports, in /proc/cpuinfo spelling, per architecture.
X86_FLAGS = ["avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl", "avx512dq",
             "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]
ARM_FLAGS = ["asimd", "asimddp", "asimdhp"]


def cpuinfo_flags():
    """The flag set of the first CPU in /proc/cpuinfo ('flags' on x86, 'Features' on arm64)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(val.split())
    raise AssertionError("/proc/cpuinfo has no flags/Features line")


def expected_features():
    flags = cpuinfo_flags()
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return {f for f in X86_FLAGS if f in flags}
    if machine in ("aarch64", "arm64"):
        exp = {f for f in ("asimd", "asimddp") if f in flags}
        if "asimdhp" in flags and "fphp" in flags:  # fp16 = scalar and vector half arithmetic
            exp.add("asimdhp")
        return exp
    return set()


def physical_cores_from_cpuinfo():
    """Unique (physical id, core id) among the CPUs this process may run on; None if absent."""
    allowed = os.sched_getaffinity(0)
    cores, proc, phys = set(), None, 0
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "processor":
                proc = int(val)
            elif key == "physical id":
                phys = int(val)
            elif key == "core id" and proc in allowed:
                cores.add((phys, int(val)))
    return len(cores) or None


def run_cli(*args, env_extra=None):
    env = dict(os.environ)
    env.pop("GGMLPY_ISA", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "ggmlpy.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def parse_info(text):
    out = {}
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if sep:
            out[key.strip()] = val.strip()
    return out


def test_cli_info_features_match_proc_cpuinfo():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    info = parse_info(r.stdout)
    assert r.stdout.startswith(f"ggmlpy {ggmlpy.__version__}")
    listed = set(info["cpu features"].split()) - {"(none)"}
    assert listed == expected_features(), (listed, expected_features())


def test_feature_dict_agrees_with_names():
    feats = _core.cpu_features()
    names = set(_core.cpu_feature_names())
    spelled = {"neon": "asimd", "dotprod": "asimddp", "fp16": "asimdhp"}
    assert {spelled.get(k, k) for k, v in feats.items() if v} == names
    assert names == expected_features()
    # a table that needs a feature is offered only when the feature is there
    avail = _core.available_kernels()
    assert avail[0] == "scalar"
    if "avx512" in avail:
        assert feats["avx512f"] and feats["avx512bw"] and feats["avx512_vnni"]
    if "avx2" in avail:
        assert feats["avx2"] and feats["fma"]
    if "neon" in avail:
        assert feats["neon"]


def test_cli_info_kernel_table_and_threads():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    info = parse_info(r.stdout)
    avail = info["available tables"].split()
    assert avail == _core.available_kernels()
    assert info["kernel table"] == avail[-1]  # default: the best this CPU runs
    threads = int(info["default threads"].split()[0])
    assert threads == _core.physical_cores() >= 1
    expected = physical_cores_from_cpuinfo()
    if expected is not None:  # x86 /proc/cpuinfo carries the topology
        assert threads == expected
    assert threads <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512", "neon"])
def test_ggmlpy_isa_forces_or_fails_clearly(isa):
    r = run_cli("info", env_extra={"GGMLPY_ISA": isa})
    if isa in _core.available_kernels():
        assert r.returncode == 0, r.stderr
        assert parse_info(r.stdout)["kernel table"] == isa
    else:
        assert r.returncode != 0
        assert "GGMLPY_ISA" in r.stderr and f"'{isa}'" in r.stderr
        assert "Traceback" not in r.stderr


def test_ggmlpy_isa_unknown_name():
    r = run_cli("info", env_extra={"GGMLPY_ISA": "sse9"})
    assert r.returncode != 0
    assert "GGMLPY_ISA" in r.stderr and "'sse9'" in r.stderr and "scalar" in r.stderr
    assert "Traceback" not in r.stderr


def test_set_kernels_in_process():
    before = _core.kernel_name()
    try:
        for name in _core.available_kernels():
            _core.set_kernels(name)
            assert _core.kernel_name() == name
        with pytest.raises(ValueError, match="no_such_table"):
            _core.set_kernels("no_such_table")
        for name in {"scalar", "avx2", "avx512", "neon"} - set(_core.available_kernels()):
            with pytest.raises(ValueError, match=name):
                _core.set_kernels(name)
    finally:
        _core.set_kernels(before)
    assert _core.kernel_name() == before
